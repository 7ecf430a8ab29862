#!/usr/bin/env bash
# README's first command: the main job on the embedded default, nothing to configure.
# For now it classifies the sample photos (or the folders/files you name).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ $# -eq 0 ]; then set -- models/samples; fi
exec cargo run --release --locked -q -p edge-agent -- classify "$@"
