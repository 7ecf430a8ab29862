#!/usr/bin/env bash
# Fetches LiteRT's C library (libLiteRt.so, XNNPACK inside) for edge-agent's `litert`
# backend from the PyPI wheel ai-edge-litert, pinned by version and sha256, and prints
# the library's path. Idempotent: a library already extracted from the pinned wheel is
# reused without touching the network.
#
#   scripts/fetch-litert.sh              # prints e.g. ~/.cache/edge-a2i/litert/2.3.0-x86_64/libLiteRt.so
#   export EDGE_AGENT_LITERT_LIB="$(scripts/fetch-litert.sh)"
#
# Install directory: $EDGE_A2I_LITERT_DIR, default ${XDG_CACHE_HOME:-~/.cache}/edge-a2i/litert.
# Only x86_64 and aarch64 have wheels (armv7 uses the compiled-in tflite backend); the
# aarch64 library needs glibc >= 2.34 at run time.
set -euo pipefail

VERSION=2.3.0
# One wheel per architecture (the cp311 build: libLiteRt.so does not depend on the
# Python version, the wheel is only a carrier). sha256 as published on PyPI.
case "$(uname -m)" in
  x86_64)
    WHEEL=ai_edge_litert-2.3.0-cp311-cp311-manylinux_2_27_x86_64.whl
    URL=https://files.pythonhosted.org/packages/65/da/254ec1df4f28ae0d03c410921053b570b116bd917dd64c296bdcc4b5192b/$WHEEL
    SHA256=1f15078a6725d2357d9de9221664c29afa0545d807559c5f7199ce5e40b96b23
    ;;
  aarch64 | arm64)
    WHEEL=ai_edge_litert-2.3.0-cp311-cp311-manylinux_2_27_aarch64.whl
    URL=https://files.pythonhosted.org/packages/33/68/446c2685f5752eef7891dc8a43ca27bd393461ea0caac7c413587c2f4535/$WHEEL
    SHA256=853fc608f96da87bd5f3458465dfb9abbf18d5ae6b94eceacead407146f175ae
    ;;
  *)
    echo "fetch-litert: no LiteRT wheel for $(uname -m); edge-agent uses its tflite backend here" >&2
    exit 1
    ;;
esac

dir="${EDGE_A2I_LITERT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-a2i/litert}/$VERSION-$(uname -m)"
lib="$dir/libLiteRt.so"
stamp="$dir/wheel.sha256"

if [ -f "$lib" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SHA256" ]; then
  echo "$lib"
  exit 0
fi

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-litert: downloading $WHEEL" >&2
if command -v curl >/dev/null; then
  curl -fsSL --retry 3 -o "$tmp/$WHEEL" "$URL"
else
  python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$URL" "$tmp/$WHEEL"
fi
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
