#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default, the whole pipeline on this machine:
#  1. the recorded agent runs shipped in examples/recorded (τ-bench, τ², OpenAI messages) are imported as OTLP
#     traces and printed as span trees;
#  2. `otel-agent-eval serve` starts (no downstream: labelled traces go to its embedded store), the recorded runs
#     are replayed into it over OTLP/gRPC and the example agent (examples/manual_agent.py) sends it its trace;
#  3. serve is stopped (it evaluates what it still holds), and the evaluated traces are listed, one is shown
#     with its labels, and the report is printed (HTML in $OUT/report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${OUT:-out}"   # where traces, the store and the report go (the tests point it at a temporary folder)
port="${AGENT_EVAL_DEMO_PORT:-24317}"
ex=examples/recorded
bin=.venv/bin/otel-agent-eval
mkdir -p "$out"
rm -rf "$out/store"

$bin import $ex/tau-bench-airline.json --tools $ex/airline-tools.json --out "$out/airline.json"
$bin import $ex/tau2-retail.json --tools $ex/retail-tools.json --out "$out/retail.json"
$bin import $ex/shop-openai.jsonl --out "$out/shop.json"
$bin tree "$out/airline.json" "$out/retail.json" "$out/shop.json" --width 90

$bin serve --data-dir "$out/store" --grpc-endpoint "127.0.0.1:$port" --http-endpoint "" --metrics-endpoint "" \
    --quiet-period 0.5 --log-level WARNING &
serve=$!
trap 'kill -TERM $serve 2>/dev/null || true' EXIT
for _ in $(seq 100); do   # until serve listens
    if .venv/bin/python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)))"; then
        break
    fi
    sleep 0.1
done
$bin replay $ex/tau-bench-airline.json --tools $ex/airline-tools.json --endpoint "127.0.0.1:$port"
$bin replay $ex/tau2-retail.json --tools $ex/retail-tools.json --endpoint "127.0.0.1:$port"
$bin replay $ex/shop-openai.jsonl --endpoint "127.0.0.1:$port"
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port" .venv/bin/python examples/manual_agent.py > /dev/null
kill -TERM $serve && wait $serve   # stops receiving and evaluates everything it holds
trap - EXIT

$bin traces --data-dir "$out/store"
first_terminal=$($bin traces --data-dir "$out/store" --outcome terminal --limit 1 | awk 'NR==2 {print $1}')
if [ -n "$first_terminal" ]; then
    $bin show "$first_terminal" --data-dir "$out/store" --width 90
fi
$bin report --data-dir "$out/store" --html "$out/report.html"
