#!/bin/sh
# A Python 3.11 base image built from Debian bookworm's packages (mmdebstrap, then docker import),
# for builders that cannot reach Docker Hub. Prints its tag. Cached: the root filesystem's tar
# under ~/.cache/amem/images/, the image in the engine.
#
#   --trust-local-ca  also trust this machine's local CAs (/usr/local/share/ca-certificates):
#                     where TLS to the package registries passes through a local CA, the build
#                     stages need it. Images built from such a base are for tests here only;
#                     release images must never carry it (build them from the default base).
set -eu
trust=""
[ "${1:-}" = "--trust-local-ca" ] && trust=1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/amem/images"
mkdir -p "$cache"
key=$(cat "$0" /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-12)
tag="amem-base:bookworm-py311-${trust:+ca-}$key"
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
tar="$cache/base-${trust:+ca-}$key.tar"
if [ ! -s "$tar" ]; then
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >/dev/null
  fi
  hook=""
  if [ -n "$trust" ]; then
    hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" && chroot "$1" update-ca-certificates'
  fi
  echo "build-base-image: mmdebstrap bookworm (about a minute)" >&2
  # No recommended packages, documentation, manual pages or translations, and /usr merged by
  # mmdebstrap's hook (the usrmerge package would bring the whole of perl): a base about as
  # small as python:3.11-slim.
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    ${hook:+--customize-hook="$hook"} \
    bookworm "$cache/partial.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" >&2
  mv "$cache/partial.tar" "$tar"
fi
docker import "$tar" "$tag" >/dev/null
echo "$tag"
