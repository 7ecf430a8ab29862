#!/usr/bin/env bash
# README's first command: local mode on the embedded default, nothing to configure.
# Builds edge-agent and local-aws (release), then `local-aws run`: broker, object
# store, review service and relay in one process, edge-agent as its child, over
# models/samples (or pass --frames DIR; --help lists the options). It prints the
# reviewer page's URL; state lives in ./local-mode, so a second run resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# cloud-relay too: its `fleet` commands are what the printed `fleet:` line runs.
cargo build --release --locked -q -p edge-agent -p local-aws -p cloud-relay
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/local-aws" run "$@"
