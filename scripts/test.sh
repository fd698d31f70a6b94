#!/usr/bin/env bash
# Runs every Chorus test: installs what it needs, checks the house style's lints (clippy with
# warnings as errors: the workspace lints in Cargo.toml), then the whole workspace's tests (unit
# tests, end-to-end tests with real processes, and the protocol's conformance vectors in
# ../shared). Arguments go to every `cargo test` (a name filter, `--nocapture`).
#
# The end-to-end tests (crate chorus-tests) mostly wait for slots of wall-clock time, and a
# debug node idles between them, so two groups of them run side by side: the attacks
# (hostile.rs) beside the NAT testbed, the loopback networks and the command line. The tests
# that time audio or links to the millisecond (testbed, playback) and the browser and ffmpeg
# ones (listener) run after, alone. Every test runs; the exit status is the first failure's.
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
# Every end-to-end test file belongs to a group below: a new one must be added there.
for f in tests/tests/*.rs; do
  case "$(basename "$f" .rs)" in
    hostile | nat | network | cli | testbed | listener | playback | internet) ;;
    *) echo "scripts/test.sh runs no group with $f: add it to one" >&2; exit 1 ;;
  esac
done
cargo test --workspace --locked --no-run
status=0
# Runs a step and keeps the first failure's exit status.
step() {
  local code=0
  "$@" || code=$?
  [ "$status" -ne 0 ] || status=$code
}
step cargo test --workspace --locked --no-fail-fast --exclude chorus-tests "$@"
step cargo test -p chorus-tests --locked --no-fail-fast --lib --bins "$@"

hostile_log=$(mktemp)
trap 'rm -f "$hostile_log"' EXIT
cargo test -p chorus-tests --locked --no-fail-fast --test hostile "$@" >"$hostile_log" 2>&1 &
hostile=$!
step cargo test -p chorus-tests --locked --no-fail-fast --test nat --test network --test cli "$@"
step wait "$hostile"
echo "---- tests/tests/hostile.rs (ran beside the group above) ----"
cat "$hostile_log"
step cargo test -p chorus-tests --locked --no-fail-fast --test testbed --test listener --test playback --test internet "$@"
exit "$status"
