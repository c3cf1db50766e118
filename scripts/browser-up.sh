#!/bin/sh
# A headless Chromium for the console's browser tests (tests/console/): Debian's, since vendor
# browser downloads are unreachable from these machines. Installs the package when missing
# (needs root and apt-get, as CI machines give); says why and exits 1 when it cannot.
set -eu
chromium="${AMEM_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser-up: no Chromium at $chromium, and no way to install one (needs root and apt-get);" \
    "install Debian's chromium or set AMEM_CHROMIUM" >&2
  exit 1
fi
echo "browser-up: installing Debian's chromium" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
