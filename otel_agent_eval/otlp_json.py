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
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .ingest.jsonfile import loads

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
# Bytes of each id: a trace id is 16 bytes (32 hex digits), a span id 8 (16 hex digits).
_ID_BYTES = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
}


def _walk_spans(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, span)`` for every span and span link; parts of the wrong shape are left to the protobuf parser."""
    for key in ("resourceSpans", "resource_spans"):
        for i, rs in _items(obj.get(key)):
            for ss_key in ("scopeSpans", "scope_spans"):
                for j, ss in _items(rs.get(ss_key)):
                    for k, span in _items(ss.get("spans")):
                        where = f"{key}[{i}].{ss_key}[{j}].spans[{k}]"
                        yield where, span
                        for n, link in _items(span.get("links")):
                            yield f"{where}.links[{n}]", link


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        yield from ((i, item) for i, item in enumerate(value) if isinstance(item, dict))


def request_to_json(request: ExportTraceServiceRequest) -> str:
    """One line of OTLP JSON."""
    obj = json_format.MessageToDict(request, use_integers_for_enums=True)
    for _, span in _walk_spans(obj):
        for key in _ID_FIELDS:
            if key in span:
                span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(obj, ensure_ascii=False)


def request_from_json(text_or_obj: str | dict[str, Any]) -> ExportTraceServiceRequest:
    """Parse OTLP JSON (hex ids; base64 ids as written by protobuf's own JSON printer are accepted too).

    Raises ``ValueError``, and nothing else, whatever the input, naming what is wrong and where: text that is
    not JSON (or nests deeper than 200 levels: :func:`.jsonfile.loads`), a value of the wrong type for its
    field, an id that is neither hex nor base64 of the right length (refused rather than decoded into an id of
    the wrong length). A lone surrogate (``"\\ud800"``) is read as U+FFFD, as everywhere JSON is read.

    >>> request_from_json({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abc"}]}]}]})
    Traceback (most recent call last):
    ...
    ValueError: resourceSpans[0].scopeSpans[0].spans[0].traceId: not a trace id (32 hex digits, or base64 of 16 bytes)
    >>> request_from_json('{"resourceSpans": ' + "[" * 100_000)
    Traceback (most recent call last):
    ...
    ValueError: not JSON: nested deeper than 200 levels: line 1 column 218 (char 217)
    """
    if isinstance(text_or_obj, str):
        text = text_or_obj
    else:
        try:  # a copy (the ids are rewritten), and the same checks as text gets
            text = json.dumps(text_or_obj)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"not a JSON value: {type(exc).__name__}: {exc}") from None
    try:
        obj = loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("an OTLP JSON request is an object with 'resourceSpans'")
    for where, span in _walk_spans(obj):
        for key, size in _ID_BYTES.items():
            if key in span:
                span[key] = _id_base64(span[key], size, key, where)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(obj, request)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None
    except (DecodeError, SystemError, UnicodeError, TypeError, ValueError, RecursionError) as exc:
        # What upb's parser raises past its ParseError: a key it cannot encode (SystemError), a message past
        # its depth (DecodeError). The decoder above keeps those out; this keeps any other out of the callers.
        raise ValueError(f"not an OTLP trace export request: {type(exc).__name__}: {exc}") from None
    return request


def _id_base64(value: Any, size: int, key: str, where: str) -> str:
    """An id (hex, or base64 as protobuf's JSON mapping writes bytes) as base64 for the protobuf parser."""
    if value == "" and key in ("parentSpanId", "parent_span_id"):
        return ""  # a root span
    if isinstance(value, str):
        if len(value) == 2 * size:
            try:
                return base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                pass
        try:
            decoded = base64.b64decode(value, validate=True)
        except ValueError:
            decoded = b""
        if len(decoded) == size:
            return str(value)
    kind = "trace id" if size == 16 else "span id"
    raise ValueError(f"{where}.{key}: not a {kind} ({2 * size} hex digits, or base64 of {size} bytes)")
