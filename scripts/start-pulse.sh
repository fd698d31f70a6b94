#!/usr/bin/env bash
# Makes sure a PulseAudio server answers, so that cpal (through ALSA's pulse plugin, package
# libasound2-plugins) has a real-time output device on machines without a sound card: the cpal
# sink's tests and the node's end-to-end test use it. Idempotent and safe to run from several
# processes at once (a lock serialises them, and `pulseaudio --start` itself starts at most one
# daemon per user). Exits 0 when a server answers `pactl info`, nonzero with a message otherwise.
#
# A daemon started here keeps running after the caller exits (--exit-idle-time=-1: it never
# quits when idle), so later runs find it and cost nothing; `pulseaudio --kill` stops it. When
# it had to start one it also loads a 48 kHz null sink named chorus_null and makes it the
# default, so nothing is resampled; a server that was already running is left as it is.
set -euo pipefail

if pactl info >/dev/null 2>&1; then
  exit 0
fi
for tool in pulseaudio pactl; do
  if ! command -v "$tool" >/dev/null; then
    echo "start-pulse: no $tool here; install pulseaudio and libasound2-plugins" \
         "(scripts/install-deps.sh --test)" >&2
    exit 1
  fi
done

# Serialise concurrent callers, so only one of them loads the null sink.
lock="${TMPDIR:-/tmp}/chorus-start-pulse.$(id -u).lock"
exec 9>"$lock"
if command -v flock >/dev/null; then
  flock -w 30 9 || { echo "start-pulse: timed out waiting for $lock" >&2; exit 1; }
fi
if pactl info >/dev/null 2>&1; then
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# As root it warns that it is "not intended to be run as root"; it runs all the same.
if ! pulseaudio --start --exit-idle-time=-1 >"$log" 2>&1; then
  echo "start-pulse: pulseaudio --start failed:" >&2
  grep -v "not intended to be run as root" "$log" >&2 || true
  exit 1
fi
for _ in $(seq 50); do
  pactl info >/dev/null 2>&1 && break
  sleep 0.1
done
if ! pactl info >/dev/null 2>&1; then
  echo "start-pulse: pulseaudio started but pactl info gets no answer" >&2
  exit 1
fi
if ! pactl list short sinks | grep -q chorus_null; then
  pactl load-module module-null-sink sink_name=chorus_null rate=48000 channels=2 \
    sink_properties=device.description=chorus_null >/dev/null
fi
pactl set-default-sink chorus_null
exit 0
