#!/usr/bin/env bash
# Cross-builds edge-agent (release) for an ARM Linux board without Docker, with
# Debian's cross compilers, and prints the binary's path. Idempotent: what is already
# installed is not touched; a finished build is only re-checked by cargo.
#
#   scripts/cross-build.sh aarch64-unknown-linux-gnu        # Raspberry Pi 3/4/5 (64-bit OS), Jetson
#   scripts/cross-build.sh armv7-unknown-linux-gnueabihf    # 32-bit Raspberry Pi OS
#   CARGO_TARGET_DIR=/elsewhere nice -n 19 scripts/cross-build.sh aarch64-unknown-linux-gnu
#   scripts/cross-build.sh --dev aarch64-unknown-linux-gnu   # the test profile (CI: scripts/test-devices.sh)
#
# Installs, saying so first (scripts/cross-env.sh): the Debian cross compilers (apt-get)
# and the Rust target (rustup). Not installed: qemu-user, only needed to try the binary
# on this machine (scripts/test-devices.sh installs it).
# Extra arguments go to cargo. TF Lite's C/C++ flags for the target come from
# .cargo/config.toml; the settings below are only about the toolchain.
set -euo pipefail

usage() { echo "usage: $0 [--dev] aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf [cargo args...]" >&2; exit 2; }
# --dev: cargo's dev profile (what the tests build: minutes faster than release; the
# test command also lowers TF Lite to -O2, scripts/test-env.sh) into
# target/<triple>/debug instead of target/<triple>/release.
profile=release
if [ "${1:-}" = --dev ]; then profile=dev; shift; fi
[ $# -ge 1 ] || usage
target="$1"; shift
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=cross-env.sh
source "$root/scripts/cross-env.sh" "$target"

cd "$root"
echo "cross-build: cargo build --profile $profile --target $target -p edge-agent $*" >&2
cargo build --profile "$profile" --target "$target" -p edge-agent "$@"

target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
out_dir=release; [ "$profile" = dev ] && out_dir=debug
bin="$target_dir/$target/$out_dir/edge-agent"
[ -x "$bin" ] || { echo "cross-build: $bin was not built" >&2; exit 1; }
echo "cross-build: try it here with: $qemu -L /usr/$gnu $bin classify --backend tflite models/samples" >&2
echo "$bin"
