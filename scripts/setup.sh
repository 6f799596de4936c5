#!/bin/sh
# Install the Debian packages the build and tests need, only those missing.
# Usage: sh scripts/setup.sh PACKAGE...
set -eu
missing=""
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $pkg"
    fi
done
if [ -z "$missing" ]; then
    echo "setup: all build dependencies are installed"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "setup: need root (or sudo) to install:$missing" >&2
    exit 2
fi
echo "setup: installing:$missing"
$SUDO apt-get update -q
# shellcheck disable=SC2086  # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
