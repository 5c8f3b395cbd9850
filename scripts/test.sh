#!/usr/bin/env bash
# Set up .venv and run every check: ruff, mypy (strict, on the package), and the whole pytest suite
# (doctests in the package included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-system-deps.sh   # Chromium, for the test that renders the HTML report
# Jaeger for tests/test_jaeger_e2e.py, built once per machine into the cache outside the repo (minutes when
# cold). Without Go the test skips; a failed build is reported by the test (its fixture builds it again).
if command -v "${GO:-go}" >/dev/null 2>&1 || bash scripts/build-jaeger.sh --path-only >/dev/null 2>&1; then
    bash scripts/build-jaeger.sh >/dev/null || echo "test.sh: building Jaeger failed; tests/test_jaeger_e2e.py will fail" >&2
fi
.venv/bin/ruff check otel_agent_eval tests bench examples dashboards
.venv/bin/mypy
status=0
.venv/bin/pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
