#!/usr/bin/env bash
# Set up .venv and run every check: ruff, mypy (strict, on the package), and the whole pytest suite
# (doctests in the package included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-system-deps.sh   # Chromium, for the test that renders the HTML report
.venv/bin/ruff check otel_agent_eval tests bench examples
.venv/bin/mypy
status=0
.venv/bin/pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
