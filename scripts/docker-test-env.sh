#!/usr/bin/env bash
# A private Docker engine for building and running the lmukws image on a machine that cannot pull
# images and has no bridge network (the test in tests/docker/ uses it; people may too).
#
#   scripts/docker-test-env.sh start   # start dockerd (root) unless running; prints DOCKER_HOST=...
#   scripts/docker-test-env.sh base    # make the local stand-in for python:3.11-slim if missing
#   scripts/docker-test-env.sh stop    # stop the dockerd this script started, by its pid
#   scripts/docker-test-env.sh status  # exit 0 if that dockerd is running
#
# The engine keeps its images under $LMUKWS_DOCKER_ROOT (default /var/tmp/lmukws-docker), so the
# base image and the build cache survive between runs. It runs with --bridge=none and
# --iptables=false: build and run with --network=host.
#
# The stand-in base is Debian bookworm made by `debootstrap --variant=minbase` with python3, pip
# and venv, the machine's extra CA certificates and pip configuration, imported with
# `docker import` and tagged python:3.11-slim, so `FROM python:3.11-slim` builds unchanged.
# Needs the Debian packages docker.io and debootstrap.
set -euo pipefail

ROOT="${LMUKWS_DOCKER_ROOT:-/var/tmp/lmukws-docker}"
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/dockerd.pid"
BASE_TAG="${LMUKWS_DOCKER_BASE_TAG:-python:3.11-slim}"
MIRROR="${LMUKWS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DOCKER_HOST="unix://$SOCK"

die() { echo "docker-test-env: $*" >&2; exit 1; }

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && docker version >/dev/null 2>&1
}

start() {
  if running; then echo "DOCKER_HOST=$DOCKER_HOST"; return 0; fi
  [ "$(id -u)" -eq 0 ] || die "dockerd needs root"
  command -v dockerd >/dev/null || die "dockerd not found (Debian package docker.io)"
  command -v docker >/dev/null || die "docker client not found"
  mkdir -p "$ROOT/data" "$ROOT/exec"
  rm -f "$PIDFILE"
  # setsid: the daemon must not die with the shell that started it
  setsid dockerd --bridge=none --iptables=false --ip6tables=false \
    --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$PIDFILE" \
    --host "$DOCKER_HOST" >"$ROOT/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    if running; then echo "DOCKER_HOST=$DOCKER_HOST"; return 0; fi
    sleep 0.5
  done
  tail -n 20 "$ROOT/dockerd.log" >&2 || true
  die "dockerd did not start (log: $ROOT/dockerd.log)"
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$PIDFILE"
}

base() {
  running || die "the engine is not running; run '$0 start' first"
  if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then return 0; fi
  command -v debootstrap >/dev/null || die "debootstrap not found (Debian package debootstrap)"
  local rootfs="$ROOT/rootfs.$$"
  rm -rf "$rootfs"
  trap 'rm -rf "$rootfs"' EXIT
  echo "docker-test-env: debootstrap bookworm into $rootfs (a few minutes)" >&2
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$ROOT/debootstrap.log" 2>&1 \
    || { tail -n 20 "$ROOT/debootstrap.log" >&2; die "debootstrap failed"; }
  # the machine's extra CA certificates (TLS interception) and pip configuration
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$BASE_TAG" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "docker-test-env: tagged $BASE_TAG" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  base) base ;;
  status) running ;;
  *) echo "usage: $0 start|base|stop|status" >&2; exit 2 ;;
esac
