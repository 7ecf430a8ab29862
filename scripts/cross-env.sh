# Sourced, not run: `source scripts/cross-env.sh TRIPLE` installs what a cross build of
# edge-agent for TRIPLE needs (saying so first: Debian's cross compilers through
# apt-get, the Rust target through rustup; with QEMU=1 also qemu-user) and exports the
# toolchain settings cargo, the cc crate and bindgen read. Sets `gnu` (the Debian
# triple, e.g. aarch64-linux-gnu) and `qemu` (qemu-aarch64 / qemu-arm). Used by
# scripts/cross-build.sh and scripts/test-devices.sh: one copy of the recipe README's
# "Cross builds" section spells out.
cross_target="$1"
case "$cross_target" in
  aarch64-unknown-linux-gnu)     gnu=aarch64-linux-gnu;   qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf; qemu=qemu-arm ;;
  *) echo "cross-env: unknown target '$cross_target' (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" >&2; return 2 ;;
esac

cross_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# gcc/g++ for the target (with its glibc and libstdc++), the host's gcc and libc6-dev
# (build scripts are linked for this machine), make for TF Lite's Makefile, libclang
# for bindgen in the tflite crate, python3 and binutils (readelf) for the scripts.
cross_packages=(make gcc libc6-dev binutils python3 "gcc-$gnu" "g++-$gnu" libclang-dev)
[ "${QEMU:-}" = 1 ] && cross_packages+=(qemu-user)
cross_missing=()
for p in "${cross_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || cross_missing+=("$p")
done
if [ ${#cross_missing[@]} -gt 0 ]; then
  echo "cross-env: installing Debian packages: ${cross_missing[*]}" >&2
  cross_as_root apt-get update -qq
  cross_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${cross_missing[@]}" >/dev/null
fi
# (grep without -q: an early exit would fail rustup's write under pipefail)
if ! rustup target list --installed | grep -x "$cross_target" >/dev/null; then
  echo "cross-env: rustup target add $cross_target" >&2
  rustup target add "$cross_target"
fi

# libstdc++'s headers live in /usr/<gnu>/include/c++/<gcc major>. bindgen needs them
# named with -isystem (before the C headers: <cstdlib> does #include_next <stdlib.h>);
# with -I they are dropped as duplicates and stdlib.h is not found.
cross_gcc_major="$("$gnu-gcc" -dumpversion | cut -d. -f1)"
cross_cxx_inc="/usr/$gnu/include/c++/$cross_gcc_major"
[ -d "$cross_cxx_inc/$gnu" ] || { echo "cross-env: $cross_cxx_inc/$gnu is missing (g++-$gnu installed?)" >&2; return 1; }

cross_upper="$(echo "$cross_target" | tr 'a-z-' 'A-Z_')"
cross_lower="${cross_target//-/_}"
export "CARGO_TARGET_${cross_upper}_LINKER=$gnu-gcc"
export "CC_${cross_lower}=$gnu-gcc" "CXX_${cross_lower}=$gnu-g++" "AR_${cross_lower}=$gnu-ar"
export "BINDGEN_EXTRA_CLANG_ARGS_${cross_lower}=--sysroot=/usr/$gnu -isystem $cross_cxx_inc -isystem $cross_cxx_inc/$gnu"
# `cargo test --target` runs the test binaries through qemu-user, the target's glibc
# and libstdc++ from the cross compiler's sysroot.
export "CARGO_TARGET_${cross_upper}_RUNNER=$qemu -L /usr/$gnu"
