#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default: import the recorded agent runs shipped in
# examples/recorded (τ-bench, τ², OpenAI messages) as OTLP JSON traces, and print them as span trees.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${OUT:-out}"   # where the traces go (the tests point it at a temporary folder)
mkdir -p "$out"
.venv/bin/otel-agent-eval import examples/recorded/tau-bench-airline.json examples/recorded/tau2-retail.json \
    examples/recorded/shop-openai.jsonl --out "$out/traces.json"
.venv/bin/otel-agent-eval tree "$out/traces.json" --width 90
