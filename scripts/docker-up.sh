#!/bin/sh
# A Docker engine to build and run amem's images: the one already running, or dockerd started
# here (installed from Debian's packages when missing; needs root, as CI machines give). Says
# why, and exits 1, when there can be none.
set -eu
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "docker-up: no Docker engine, and no way to install one here (needs root and apt-get)" >&2
    exit 1
  fi
  echo "docker-up: installing Debian's docker.io" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null
fi
log="${XDG_CACHE_HOME:-$HOME/.cache}/amem/dockerd.log"
mkdir -p "$(dirname "$log")"
echo "docker-up: starting dockerd (log: $log)" >&2
nohup dockerd >"$log" 2>&1 &
i=0
until docker info >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 60 ]; then
    echo "docker-up: dockerd did not come up within 60 s; its log:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  sleep 1
done
