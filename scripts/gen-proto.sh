#!/usr/bin/env bash
# Regenerate the Python code of proto/otel_agent_eval/v1/*.proto into otel_agent_eval/hook/_proto/.
#
#   scripts/gen-proto.sh [OUT_DIR]     (default: otel_agent_eval/hook/_proto)
#
# PYTHON (default .venv/bin/python) needs grpcio-tools; RUFF (default: next to PYTHON) formats the output.
#
# Needs grpcio-tools (in the dev extras). The OTLP types the protocol imports
# (opentelemetry/proto/common/v1/common.proto) are taken from the installed opentelemetry-proto package as a
# descriptor set, so no copy of the OTLP .proto files is needed. The generated modules import each other
# relatively, so they live inside the package; they import the OTLP types from opentelemetry.proto.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="${1:-$root/otel_agent_eval/hook/_proto}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$python" - "$tmp/otlp.pb" <<'PY'
import sys

from google.protobuf import descriptor_pb2
from opentelemetry.proto.common.v1 import common_pb2

files = descriptor_pb2.FileDescriptorSet()
common_pb2.DESCRIPTOR.CopyToProto(files.file.add())
with open(sys.argv[1], "wb") as f:
    f.write(files.SerializeToString())
PY

mkdir -p "$tmp/gen"
(cd "$root/proto" && "$python" -m grpc_tools.protoc \
    --proto_path=. \
    --descriptor_set_in="$tmp/otlp.pb" \
    --python_out="$tmp/gen" --pyi_out="$tmp/gen" --grpc_python_out="$tmp/gen" \
    otel_agent_eval/v1/evaluation.proto)

mkdir -p "$tmp/fmt"
for f in "$tmp"/gen/otel_agent_eval/v1/*.py "$tmp"/gen/otel_agent_eval/v1/*.pyi; do
    # otel_agent_eval.v1.X -> the sibling module in this package; no lint for generated code
    { echo "# ruff: noqa"; sed -e 's/^from otel_agent_eval\.v1 import \(.*\)$/from . import \1/' "$f"; } \
        > "$tmp/fmt/$(basename "$f")"
done
cat > "$tmp/fmt/__init__.py" <<'PY'
"""Generated from proto/otel_agent_eval/v1/evaluation.proto by scripts/gen-proto.sh: do not edit."""
PY
# formatted as the project formats, so that `ruff format` leaves the generated files alone
ruff="${RUFF:-$(dirname "$python")/ruff}"
[ -x "$ruff" ] || ruff=ruff
"$ruff" format --quiet --config "$root/pyproject.toml" "$tmp/fmt"
mkdir -p "$out"
cp "$tmp"/fmt/* "$out/"
