#!/usr/bin/env bash
# Start Arize Phoenix (a trace store with a UI) on loopback, in the foreground, as a downstream for
# `otel-agent-eval serve`. Its SQLite database and files go to DIR (default out/phoenix). Ctrl-C stops it.
#
#   bash scripts/phoenix.sh [DIR]
#   otel-agent-eval serve --downstream http://127.0.0.1:6006/v1/traces    # or grpc://127.0.0.1:4319
#
# PHOENIX_PORT (UI, REST API, OTLP/HTTP; default 6006) and PHOENIX_GRPC_PORT (OTLP/gRPC; default 4319 here, not
# Phoenix's 4317, which is the processor's own receiver) change the ports. Phoenix binds its gRPC port on all
# interfaces (it has no setting for that address); the HTTP port is on 127.0.0.1 only.
# Labelled spans: http://127.0.0.1:6006 (project "default"), or GET /v1/projects/default/spans.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-out/phoenix}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if ! .venv/bin/python -c 'import importlib.metadata as m; m.version("arize-phoenix")' 2>/dev/null; then
    echo "phoenix: Arize Phoenix is not installed in .venv: run scripts/setup.sh" >&2
    exit 1
fi
export PHOENIX_WORKING_DIR="$dir"
export PHOENIX_HOST=127.0.0.1
export PHOENIX_PORT="${PHOENIX_PORT:-6006}"
export PHOENIX_GRPC_PORT="${PHOENIX_GRPC_PORT:-4319}"
export PHOENIX_ALLOW_EXTERNAL_RESOURCES=false
export PHOENIX_TELEMETRY_ENABLED=false
export PHOENIX_DISABLE_AGENT_ASSISTANT=true
export PHOENIX_LOG_MIGRATIONS=false
export TMPDIR="$dir"
echo "phoenix: data in $dir; OTLP/HTTP http://127.0.0.1:$PHOENIX_PORT/v1/traces, OTLP/gRPC 127.0.0.1:$PHOENIX_GRPC_PORT" >&2
exec .venv/bin/python -m phoenix.server.main serve
