#!/usr/bin/env bash
# Runs the Chorus radio demo with no configuration: installs what it needs, builds, and runs
# `chorus demo`. Extra arguments go to `chorus demo` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked -p chorus
exec "${CARGO_TARGET_DIR:-target}/release/chorus" demo "$@"
