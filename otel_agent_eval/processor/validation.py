"""What the receivers refuse before anything is acknowledged: spans whose ids a downstream cannot take.

A span with a 3-byte trace id parses as protobuf, but an OpenTelemetry Collector refuses it (``invalid TraceID
length``), and so would every downstream after us. Acknowledged, it would sit in the outbox with nowhere to go;
refused here, the client that sent it is told which field of which span is wrong (gRPC ``INVALID_ARGUMENT``, HTTP
400) and nothing of the request is kept.

The whole request is refused, not only its bad spans (OTLP's ``partial_success`` would allow that): a request is
kept as it was received, or not at all, and a client sees a refusal clearly, where a partial success is at best a
line in its log. A client that sends one malformed id usually sends only malformed ones.
"""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8


class InvalidRequest(ValueError):
    """A request the processor does not take (permanent: the client must not retry it)."""


def validate_request(request: ExportTraceServiceRequest) -> None:
    """Raise :class:`InvalidRequest` naming the first malformed id: a span's trace id not 16 bytes or all zero,
    its span id not 8 bytes or all zero, its parent span id neither empty nor 8 bytes, a link's ids of another
    length than 16 / 8 bytes (a link's ids may be zero: links to invalid contexts are recorded when they carry
    attributes; empty, as a Collector takes them)."""
    for i, resource_spans in enumerate(request.resource_spans):
        for j, scope_spans in enumerate(resource_spans.scope_spans):
            for k, span in enumerate(scope_spans.spans):
                trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
                if (
                    len(trace_id) == TRACE_ID_BYTES
                    and len(span_id) == SPAN_ID_BYTES
                    and len(parent) in (0, SPAN_ID_BYTES)
                    and trace_id.strip(b"\0")
                    and span_id.strip(b"\0")
                    and not span.links
                ):
                    continue  # the common case, in one test
                where = f"resource_spans[{i}].scope_spans[{j}].spans[{k}]"
                _id(trace_id, TRACE_ID_BYTES, f"{where}.trace_id")
                _id(span_id, SPAN_ID_BYTES, f"{where}.span_id")
                if len(parent) not in (0, SPAN_ID_BYTES):
                    raise InvalidRequest(
                        f"{where}.parent_span_id: {len(parent)} bytes, expected {SPAN_ID_BYTES} (or none, for a root)"
                    )
                for n, link in enumerate(span.links):
                    for field, value, size in (
                        ("trace_id", link.trace_id, TRACE_ID_BYTES),
                        ("span_id", link.span_id, SPAN_ID_BYTES),
                    ):
                        if len(value) not in (0, size):
                            raise InvalidRequest(f"{where}.links[{n}].{field}: {len(value)} bytes, expected {size}")


def _id(value: bytes, size: int, where: str) -> None:
    if len(value) != size:
        raise InvalidRequest(f"{where}: {len(value)} bytes, expected {size}")
    if not value.strip(b"\0"):
        raise InvalidRequest(f"{where}: all zero, an invalid id")
