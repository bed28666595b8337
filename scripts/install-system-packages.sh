#!/usr/bin/env bash
# Installs the Debian packages lmukws needs (audio I/O, speech synthesisers for the synthetic
# corpus, a headless microphone and a browser for the end-to-end tests), or the packages named as
# arguments (scripts/install-speech-data.sh). Idempotent: when every package is already installed
# it returns at once without touching apt. Enables contrib and non-free when it installs.
set -euo pipefail

PACKAGES=(
  # audio I/O and the headless microphone
  libsndfile1 libportaudio2 sox pulseaudio pulseaudio-utils alsa-utils
  # speech synthesisers (main)
  espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-rablpc16k
  festvox-don festvox-ellpc11k festvox-us-slt-hts festvox-en1
  # speech synthesisers (contrib / non-free)
  mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 festvox-us1 festvox-us2 festvox-us3
  rhvoice rhvoice-english libttspico-utils
  # MBROLA databases of other languages that espeak-ng speaks English with (training voices)
  mbrola-af1 mbrola-nl2 mbrola-fr1 mbrola-fr4 mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4
  mbrola-de5 mbrola-de6 mbrola-gr2 mbrola-hu1 mbrola-pl1 mbrola-ro1 mbrola-sw1 mbrola-sw2
  # browser end-to-end tests
  chromium
  # Docker image test: a private engine and a debootstrap base (tests/docker, scripts/docker-*)
  docker.io debootstrap
)
[ $# -gt 0 ] && PACKAGES=("$@")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "lmukws: these Debian packages are missing and I am not root: ${missing[*]}" >&2
    exit 1
  fi
fi

# mbrola*, festvox-us*, rhvoice, libttspico-utils, uqm-* live in contrib/non-free: add those.
if [ -f /etc/apt/sources.list.d/debian.sources ] \
   && ! grep -q "contrib" /etc/apt/sources.list.d/debian.sources; then
  $SUDO sed -i 's/^Components: main$/Components: main contrib non-free/' \
    /etc/apt/sources.list.d/debian.sources
fi
if [ -f /etc/apt/sources.list ] && grep -q "^deb .* main$" /etc/apt/sources.list; then
  $SUDO sed -i 's/^\(deb .* main\)$/\1 contrib non-free/' /etc/apt/sources.list
fi

echo "lmukws: installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
