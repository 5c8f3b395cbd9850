#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with everything the tests need.
# Idempotent: re-running it is cheap once the environment is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "setup: installing otel-agent-eval and its dev tools into .venv (log: .venv/install.log)" >&2
    if ! { .venv/bin/python -m pip install --upgrade pip \
           && .venv/bin/python -m pip install -e '.[dev]'; } >.venv/install.log 2>&1; then
        tail -n 40 .venv/install.log >&2
        echo "setup: pip install failed (full log: .venv/install.log)" >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
