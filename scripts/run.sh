#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default: the recorded agent runs shipped in
# examples/recorded (τ-bench, τ², OpenAI messages) are imported as OTLP JSON traces and printed as span trees,
# then the traces are evaluated for failure modes and reported on (text here, HTML in $OUT/report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${OUT:-out}"   # where the traces and results go (the tests point it at a temporary folder)
ex=examples/recorded
mkdir -p "$out"
bin=.venv/bin/otel-agent-eval
$bin import $ex/tau-bench-airline.json --tools $ex/airline-tools.json --out "$out/airline.json"
$bin import $ex/tau2-retail.json --tools $ex/retail-tools.json --out "$out/retail.json"
$bin import $ex/shop-openai.jsonl --out "$out/shop.json"
$bin tree "$out/airline.json" "$out/retail.json" "$out/shop.json" --width 90
$bin evaluate "$out/airline.json" "$out/retail.json" "$out/shop.json" --output "$out/results.jsonl"
$bin report "$out/results.jsonl" --html "$out/report.html"
