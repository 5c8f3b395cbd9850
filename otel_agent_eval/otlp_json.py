"""OTLP JSON: the encoding of the OTLP file exporter, one ``ExportTraceServiceRequest`` per line.

OTLP JSON is protobuf's JSON mapping with two differences the OTLP specification makes: trace and span ids
are hex strings (not base64), and enums are integers. ``google.protobuf.json_format`` does the rest.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
>>> req = ExportTraceServiceRequest()
>>> spans = req.resource_spans.add().scope_spans.add().spans
>>> span = spans.add(name="chat", trace_id=bytes(range(16)), span_id=b"\\x01" * 8)
>>> line = request_to_json(req)
>>> '"traceId": "000102030405060708090a0b0c0d0e0f"' in line
True
>>> request_from_json(line) == req
True
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _walk_spans(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in obj.get("resourceSpans", obj.get("resource_spans", ())):
        for ss in rs.get("scopeSpans", rs.get("scope_spans", ())):
            for span in ss.get("spans", ()):
                yield span
                yield from span.get("links", ())


def request_to_json(request: ExportTraceServiceRequest) -> str:
    """One line of OTLP JSON."""
    obj = json_format.MessageToDict(request, use_integers_for_enums=True)
    for span in _walk_spans(obj):
        for key in _ID_FIELDS:
            if key in span:
                span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(obj, ensure_ascii=False)


def request_from_json(text_or_obj: str | dict[str, Any]) -> ExportTraceServiceRequest:
    """Parse OTLP JSON (hex ids; base64 ids as written by protobuf's own JSON printer are accepted too).

    Raises ``ValueError`` naming what is wrong.
    """
    obj = json.loads(text_or_obj) if isinstance(text_or_obj, str) else json.loads(json.dumps(text_or_obj))
    if not isinstance(obj, dict):
        raise ValueError("an OTLP JSON request is an object with 'resourceSpans'")
    for span in _walk_spans(obj):
        for key in (*_ID_FIELDS, "trace_id", "span_id", "parent_span_id"):
            value = span.get(key)
            if isinstance(value, str) and value and _is_hex_id(value):
                span[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(obj, request)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None
    return request


def _is_hex_id(value: str) -> bool:
    if len(value) not in (16, 32):
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
