#!/usr/bin/env bash
# Installs the Debian packages that hold real recorded speech (training/recordings.py reads them):
# kajongg (English digit voices), tuxpaint-stamps-default (digits, animals, stamp descriptions in
# 12 languages, sound effects), hedgewars-data (exclamations) and, from non-free, uqm-voice and
# uqm-content (evaluation-only English speech, CC BY-NC-SA). About 1 GB with their dependencies,
# so not part of `make setup`; `make data-recordings` runs it. Idempotent: when every package is
# already installed it returns at once without touching apt.
set -euo pipefail

exec bash "$(dirname "$0")/install-system-packages.sh" \
  kajongg tuxpaint-stamps-default hedgewars-data uqm-voice uqm-content
