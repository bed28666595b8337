#!/usr/bin/env bash
# Installs the Debian packages that hold real recorded speech (training/recordings.py reads them):
# kajongg (English digit voices), tuxpaint-stamps-default (digits, animals, stamp descriptions in
# 12 languages, sound effects), hedgewars-data (exclamations) and, from non-free, uqm-voice and
# uqm-content (evaluation-only English speech, CC BY-NC-SA). About 1 GB with their dependencies,
# so not part of `make setup`; `make data-recordings` runs it. Idempotent: when every package is
# already installed it returns at once without touching apt.
set -euo pipefail

PACKAGES=(kajongg tuxpaint-stamps-default hedgewars-data uqm-voice uqm-content)

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

# uqm-voice and uqm-content live in non-free: add contrib/non-free to the apt sources.
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
