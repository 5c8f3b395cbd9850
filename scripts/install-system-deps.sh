#!/usr/bin/env bash
# Install the system packages the tests need that pip cannot:
#   - Debian's chromium (headless rendering of the HTML report), /usr/bin/chromium;
#   - Debian's prometheus (promtool, for `promtool check rules` / `promtool test rules` on alerts/, and the
#     prometheus server for the alert end-to-end test), /usr/bin/promtool and /usr/bin/prometheus.
# Idempotent: does nothing when every binary is already there; otherwise installs only what is missing
# (running `apt-get update` once). Installing needs root; as another user it prints the command and fails.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
PROMTOOL=/usr/bin/promtool
PROMETHEUS=/usr/bin/prometheus

missing=()   # Debian packages to install

if [ ! -x "$CHROMIUM" ]; then
    missing+=(chromium)
fi

if [ ! -x "$PROMTOOL" ] || [ ! -x "$PROMETHEUS" ]; then
    missing+=(prometheus)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: missing Debian package(s): ${missing[*]}; as root run:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "install-system-deps: installing ${missing[*]} (Debian package(s))" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

status=0
if [ ! -x "$CHROMIUM" ]; then
    echo "install-system-deps: chromium was installed but $CHROMIUM is still missing" >&2
    status=1
fi
for binary in "$PROMTOOL" "$PROMETHEUS"; do
    if [ ! -x "$binary" ]; then
        echo "install-system-deps: prometheus was installed but $binary is still missing" >&2
        status=1
    fi
done
exit "$status"
