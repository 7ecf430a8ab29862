#!/usr/bin/env bash
# Fetches LiteRT's C library (libLiteRt.so, XNNPACK inside) for edge-agent's `litert`
# backend from the Python wheel ai-edge-litert, through pip (`pip download` of the
# pinned version for the target platform, so a user's package mirror or proxy works),
# checks the wheel's sha256, and prints the library's path. Idempotent: a library
# already extracted from the pinned wheel is reused without touching the network.
#
#   scripts/fetch-litert.sh                  # this machine's architecture
#   scripts/fetch-litert.sh --arch aarch64   # for a Raspberry Pi / Jetson (cross builds, packages)
#   export EDGE_AGENT_LITERT_LIB="$(scripts/fetch-litert.sh)"
#
# Install directory: $EDGE_A2I_LITERT_DIR, default ${XDG_CACHE_HOME:-~/.cache}/edge-a2i/litert.
# Only x86_64 and aarch64 have wheels (armv7 uses the compiled-in tflite backend); the
# aarch64 library needs glibc >= 2.34 at run time.
set -euo pipefail

VERSION=2.3.0
arch=$(uname -m)
if [ "${1:-}" = --arch ]; then arch=${2:?--arch needs x86_64 or aarch64}; fi
# One wheel per architecture (the cp311 build: libLiteRt.so does not depend on the
# Python version, the wheel is only a carrier). sha256 as published with the release.
case "$arch" in
  x86_64)
    PLATFORM=manylinux_2_27_x86_64
    SHA256=1f15078a6725d2357d9de9221664c29afa0545d807559c5f7199ce5e40b96b23
    ;;
  aarch64 | arm64)
    arch=aarch64
    PLATFORM=manylinux_2_27_aarch64
    SHA256=853fc608f96da87bd5f3458465dfb9abbf18d5ae6b94eceacead407146f175ae
    ;;
  *)
    echo "fetch-litert: no LiteRT wheel for $arch; edge-agent uses its tflite backend there" >&2
    exit 1
    ;;
esac
WHEEL=ai_edge_litert-$VERSION-cp311-cp311-$PLATFORM.whl

dir="${EDGE_A2I_LITERT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-a2i/litert}/$VERSION-$arch"
lib="$dir/libLiteRt.so"
stamp="$dir/wheel.sha256"

if [ -f "$lib" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SHA256" ]; then
  echo "$lib"
  exit 0
fi

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-litert: pip download ai-edge-litert==$VERSION ($PLATFORM)" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" \
  --platform "$PLATFORM" --implementation cp --python-version 3.11 --abi cp311 \
  "ai-edge-litert==$VERSION" >&2
[ -f "$tmp/$WHEEL" ] || { echo "fetch-litert: pip did not fetch $WHEEL" >&2; exit 1; }
actual="$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)"
if [ "$actual" != "$SHA256" ]; then
  echo "fetch-litert: $WHEEL has sha256 $actual, expected $SHA256: refusing it" >&2
  exit 1
fi

# A wheel is a zip; python3 is there wherever the tests run (unzip may not be).
python3 - "$tmp/$WHEEL" "$tmp/libLiteRt.so" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open("ai_edge_litert/libLiteRt.so") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod 0644 "$tmp/libLiteRt.so"
# Rename into place last, so a half-written library is never picked up.
mv -f "$tmp/libLiteRt.so" "$lib"
echo "$SHA256" >"$stamp"
echo "fetch-litert: installed $lib" >&2
echo "$lib"
