#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what README's second command runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  # Keep compiled dependencies (TensorFlow Lite takes minutes) across CI runs.
  export CARGO_TARGET_DIR=/var/tmp/edge-a2i-target
fi
export CARGO_TERM_COLOR=never
# shellcheck source=test-env.sh
source scripts/test-env.sh   # TF Lite at -O2 for the tests; sets target_dir
# Formatting and lints first: they fail in seconds, not after the build.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
export EDGE_AGENT_LITERT_LIB; EDGE_AGENT_LITERT_LIB="$(scripts/fetch-litert.sh)"  # the litert backend's tests need it
# playwright-core (npm; it downloads no browser) drives Debian's chromium in the
# reviewer page test, which is required to run here, not skipped. Screenshots land in
# target/reviewer-page*.png.
npm ci --prefix local-aws/tests/web --no-audit --no-fund
# Every test of the workspace in one run (a narrower one, `-p local-aws`, resolves other
# features and rebuilds dependencies), test binaries side by side: cargo-nextest, set
# up in .config/nextest.toml. It runs no doctests: cargo test --doc does, after it.
EDGE_A2I_REQUIRE_BROWSER=1 EDGE_A2I_REQUIRE_TOOLS=1 cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --locked --doc
# The local A2I-compatible API, driven by boto3 against the real binary.
LOCAL_AWS_BIN="$target_dir/debug/local-aws" python3 -m pytest -q tests/a2i_boto3
# edge-agent cross-built for aarch64 and armv7 and run under qemu-user: classify gives
# the x86_64 build's labels and scores, the unit tests pass on aarch64.
scripts/test-devices.sh
# The Debian packages installed, run as systemd would, upgraded, removed and purged
# (only as root under CI, or with EDGE_A2I_PACKAGE_TEST=1: it installs into the system).
scripts/test-packages.sh
