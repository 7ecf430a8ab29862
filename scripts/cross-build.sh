#!/usr/bin/env bash
# Cross-builds edge-agent (release) for an ARM Linux board without Docker, with
# Debian's cross compilers, and prints the binary's path. Idempotent: what is already
# installed is not touched; a finished build is only re-checked by cargo.
#
#   scripts/cross-build.sh aarch64-unknown-linux-gnu        # Raspberry Pi 3/4/5 (64-bit OS), Jetson
#   scripts/cross-build.sh armv7-unknown-linux-gnueabihf    # 32-bit Raspberry Pi OS
#   CARGO_TARGET_DIR=/elsewhere nice -n 19 scripts/cross-build.sh aarch64-unknown-linux-gnu
#
# Installs, saying so first: the Debian cross compilers (apt-get) and the Rust target
# (rustup). Not installed: qemu-user, only needed to try the binary on this machine.
# Extra arguments go to cargo. TF Lite's C/C++ flags for the target come from
# .cargo/config.toml; the settings below are only about the toolchain.
set -euo pipefail

usage() { echo "usage: $0 aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf [cargo args...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
target="$1"; shift
case "$target" in
  aarch64-unknown-linux-gnu)     gnu=aarch64-linux-gnu;   qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf; qemu=qemu-arm ;;
  *) usage ;;
esac
root="$(cd "$(dirname "$0")/.." && pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# gcc/g++ for the target (with its glibc and libstdc++), make for TF Lite's Makefile,
# libclang for bindgen in the tflite crate.
packages=(make "gcc-$gnu" "g++-$gnu" libclang-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cross-build: installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$target"; then
  echo "cross-build: rustup target add $target" >&2
  rustup target add "$target"
fi

# libstdc++'s headers live in /usr/<gnu>/include/c++/<gcc major>. bindgen needs them
# named with -isystem (before the C headers: <cstdlib> does #include_next <stdlib.h>);
# with -I they are dropped as duplicates and stdlib.h is not found.
gcc_major="$("$gnu-gcc" -dumpversion | cut -d. -f1)"
cxx_inc="/usr/$gnu/include/c++/$gcc_major"
[ -d "$cxx_inc/$gnu" ] || { echo "cross-build: $cxx_inc/$gnu is missing (g++-$gnu installed?)" >&2; exit 1; }

t_upper="$(echo "$target" | tr 'a-z-' 'A-Z_')"
t_lower="${target//-/_}"
export "CARGO_TARGET_${t_upper}_LINKER=$gnu-gcc"
export "CC_${t_lower}=$gnu-gcc" "CXX_${t_lower}=$gnu-g++" "AR_${t_lower}=$gnu-ar"
export "BINDGEN_EXTRA_CLANG_ARGS_${t_lower}=--sysroot=/usr/$gnu -isystem $cxx_inc -isystem $cxx_inc/$gnu"

cd "$root"
echo "cross-build: cargo build --release --target $target -p edge-agent $*" >&2
cargo build --release --target "$target" -p edge-agent "$@"

target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/$target/release/edge-agent"
[ -x "$bin" ] || { echo "cross-build: $bin was not built" >&2; exit 1; }
echo "cross-build: try it here with: $qemu -L /usr/$gnu $bin classify --backend tflite models/samples" >&2
echo "$bin"
