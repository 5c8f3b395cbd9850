#!/usr/bin/env bash
# Install the system packages the tests need that pip cannot: Debian's chromium (headless rendering of the
# HTML report). Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: $CHROMIUM is missing; as root run:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends chromium" >&2
    exit 1
fi

echo "install-system-deps: installing chromium (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium

if [ ! -x "$CHROMIUM" ]; then
    echo "install-system-deps: chromium was installed but $CHROMIUM is still missing" >&2
    exit 1
fi
