#!/usr/bin/env bash
# Installs the Debian packages Chorus needs, if any is missing: FFmpeg's development libraries
# (ffmpeg-next links them), clang (bindgen), pkg-config, ALSA's development files (cpal), and
# with --test also the ffmpeg program (the tests check exports with ffprobe) and PulseAudio with
# ALSA's pulse plugin (pulseaudio, libasound2-plugins): a machine without a sound card has no
# real-time audio device, and the cpal sink's tests need one that runs callbacks at the real
# rate (ALSA's null device is not paced). scripts/start-pulse.sh starts it with a null sink.
# The status page's test drives headless Chromium (chromium) with a small Python script
# (python3) over the DevTools pipe.
# Uses apt-get as root, or through sudo otherwise. Does nothing when everything is present.
set -euo pipefail

packages=(libavcodec-dev libavformat-dev libavutil-dev libswresample-dev libavfilter-dev
          libavdevice-dev libswscale-dev pkg-config clang libclang-dev libasound2-dev)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(ffmpeg pulseaudio libasound2-plugins chromium python3)
  packages+=(iproute2 iptables) # the network testbed (docs/testbed.md): namespaces and NAT
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "Chorus needs these packages, and this system has no apt-get: ${missing[*]}" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "Chorus needs these packages; run as root or install sudo: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "Installing: ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
