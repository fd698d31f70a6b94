#!/usr/bin/env bash
# Runs every Chorus test: installs what it needs, then the whole workspace's tests (unit tests,
# end-to-end tests with real processes, and the protocol's conformance vectors in ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
cargo test --workspace --locked "$@"
