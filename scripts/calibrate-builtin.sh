#!/usr/bin/env bash
# Re-estimate the shipped calibration, otel_agent_eval/evaluate/calibration.json, from the development data:
# the reference-free detectors (Engine()) on the three run files, each with its domain's tool definitions,
# the benchmark's reward as the outcome (reward == 0: failed). Prints the leave-one-source-out figures.
# Run it after any change to a detector: tests/test_calibration.py fails while the file is stale.
#
#   bash scripts/calibrate-builtin.sh            # data in ../shared/data (AGENT_EVAL_DATA to change)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${AGENT_EVAL_DATA:-../shared/data}"
BIN="${OTEL_AGENT_EVAL:-.venv/bin/otel-agent-eval}"
"$BIN" calibrate \
    "$DATA/tau-bench/airline-gpt-4o-tasks-00-24.json" \
    "$DATA/tau2/retail-gpt-4.1.json" \
    "$DATA/tau2/retail-gpt-4.1-finetuned.json" \
    --tools "$DATA/tau-bench/airline-tools.json" \
    --tools "$DATA/tau-bench/retail-tools.json" \
    --tools "$DATA/tau-bench/retail-tools.json" \
    --confidences detector \
    --output otel_agent_eval/evaluate/calibration.json "$@"
