"""OTLP JSON files: ids are checked, not decoded into ids of the wrong length; a corrupt line costs only itself."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from otel_agent_eval.errors import InputError
from otel_agent_eval.ingest.files import read_runs
from otel_agent_eval.ingest.otlp import read_otlp_json
from otel_agent_eval.otlp_json import request_from_json

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
PARENT = "53995c3f42cd8ad8"


def request(**span: Any) -> dict[str, Any]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "s", **span}]}]}]}


def test_hex_and_base64_ids_are_read() -> None:
    for trace, span_id in ((TRACE, SPAN), (b64(TRACE), b64(SPAN))):
        [proto] = request_from_json(request(traceId=trace, spanId=span_id, parentSpanId="")).resource_spans
        span = proto.scope_spans[0].spans[0]
        assert (span.trace_id.hex(), span.span_id.hex(), span.parent_span_id) == (TRACE, SPAN, b"")


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


WHERE = "resourceSpans[0].scopeSpans[0].spans[0]"
BAD_IDS = [
    ({"traceId": "abc", "spanId": SPAN}, f"{WHERE}.traceId: not a trace id (32 hex digits, or base64 of 16 bytes)"),
    (
        {"traceId": TRACE[:16], "spanId": SPAN},
        f"{WHERE}.traceId: not a trace id (32 hex digits, or base64 of 16 bytes)",
    ),
    ({"traceId": TRACE, "spanId": TRACE}, f"{WHERE}.spanId: not a span id (16 hex digits, or base64 of 8 bytes)"),
    ({"traceId": TRACE, "spanId": "zz" * 8}, f"{WHERE}.spanId: not a span id (16 hex digits, or base64 of 8 bytes)"),
    ({"traceId": TRACE, "spanId": b64(TRACE)}, f"{WHERE}.spanId: not a span id (16 hex digits, or base64 of 8 bytes)"),
    ({"traceId": 7, "spanId": SPAN}, f"{WHERE}.traceId: not a trace id (32 hex digits, or base64 of 16 bytes)"),
    (
        {"traceId": TRACE, "spanId": SPAN, "parentSpanId": "0"},
        f"{WHERE}.parentSpanId: not a span id (16 hex digits, or base64 of 8 bytes)",
    ),
    (
        {"traceId": TRACE, "spanId": SPAN, "links": [{"traceId": TRACE, "spanId": PARENT}, {"traceId": "x"}]},
        f"{WHERE}.links[1].traceId: not a trace id (32 hex digits, or base64 of 16 bytes)",
    ),
    ({"trace_id": TRACE, "span_id": ""}, f"{WHERE}.span_id: not a span id (16 hex digits, or base64 of 8 bytes)"),
]


@pytest.mark.parametrize(("span", "message"), BAD_IDS)
def test_ids_of_the_wrong_length_are_refused(span: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        request_from_json(request(**span))
    assert str(caught.value) == message


def test_wrong_shapes_are_value_errors() -> None:
    for bad in ({"resourceSpans": 5}, {"resourceSpans": [{"scopeSpans": [{"spans": [3]}]}]}, [1]):
        with pytest.raises(ValueError):
            request_from_json(bad)  # type: ignore[arg-type]


def line(trace: str) -> str:
    span = {
        "traceId": trace,
        "spanId": SPAN,
        "name": "chat",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {
                "key": "gen_ai.output.messages",
                "value": {
                    "stringValue": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}]}])
                },
            },
        ],
    }
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def test_a_corrupt_otlp_line_costs_only_that_line(tmp_path: Path) -> None:
    path = tmp_path / "traces.json"
    other = "0af7651916cd43dd8448eb211c80319c"
    path.write_text("\n".join([line(TRACE), '{"resourceSpans": [', line("abc"), line(other)]) + "\n")
    items = list(read_runs(path))
    # The bad lines are reported as they are read; the runs come once the whole file is read (a trace may
    # span several lines).
    assert [str(i) if isinstance(i, InputError) else i.trace_id for i in items] == [
        f"{path}: line 2: not JSON: Expecting value at column 20",
        f"{path}: line 3: not an OTLP trace export request: {WHERE}.traceId: not a trace id (32 hex digits, "
        "or base64 of 16 bytes)",
        TRACE,
        other,
    ]
    # read_otlp_json, for callers that need every request, stops at the first bad one.
    with pytest.raises(InputError, match="line 2: not JSON"):
        list(read_otlp_json(path))
