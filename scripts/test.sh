#!/usr/bin/env bash
# Runs every Chorus test: installs what it needs, checks the house style's lints (clippy with
# warnings as errors: the workspace lints in Cargo.toml), then the whole workspace's tests (unit
# tests, end-to-end tests with real processes, and the protocol's conformance vectors in
# ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
if ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null; then
    rustup component add clippy
  else
    echo "clippy is missing and there is no rustup to add it: install clippy for this toolchain" >&2
    exit 1
  fi
fi
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
