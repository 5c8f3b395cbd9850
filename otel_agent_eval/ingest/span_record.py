"""A span as ingestion reads it, whether it came as OTLP protobuf or as the SDK's ``ReadableSpan``."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .. import semconv as sc

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    attributes: Mapping[str, Any]
    time_ns: int = 0


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """The parts of a span that matter to reading agent steps. Ids are lower-case hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_time_ns: int
    end_time_ns: int
    attributes: Mapping[str, Any]
    status_code: int = STATUS_UNSET
    status_message: str | None = None
    events: tuple[SpanEvent, ...] = ()
    resource: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status_code == STATUS_ERROR

    @classmethod
    def from_proto(
        cls, span: ProtoSpan, resource: Mapping[str, Any] | None = None, *, lean: bool = False
    ) -> SpanRecord:
        """The record of an OTLP span. ``lean``: for reading agent runs only (``ingest.spans``): a span that no
        dialect reads as a step or an agent (none of ``semconv.DIALECT_MARKERS`` among its keys) keeps its
        shape (ids, name, times, status) and ``gen_ai.agent.name``, not its other attributes and events: the
        HTTP and database spans around an agent are not kept whole while their trace is evaluated."""
        attributes = attributes_from_proto(span.attributes)
        if lean and not (attributes.keys() & sc.DIALECT_MARKERS or _has_marker_prefix(attributes)):
            name = attributes.get(sc.GEN_AI_AGENT_NAME)  # names a run without an agent span (ingest.spans)
            attributes = {} if name is None else {sc.GEN_AI_AGENT_NAME: name}
            events: tuple[SpanEvent, ...] = ()
        else:
            events = (
                tuple(SpanEvent(e.name, attributes_from_proto(e.attributes), e.time_unix_nano) for e in span.events)
                if span.events
                else ()
            )
        code = span.status.code
        return cls(
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex() or None,
            name=span.name,
            start_time_ns=span.start_time_unix_nano,
            end_time_ns=span.end_time_unix_nano,
            attributes=attributes,
            status_code=STATUS_OK if code == _PROTO_OK else STATUS_ERROR if code == _PROTO_ERROR else STATUS_UNSET,
            status_message=span.status.message or None,
            events=events,
            resource=resource or {},
        )

    @classmethod
    def from_readable(cls, span: ReadableSpan) -> SpanRecord:
        ctx = span.context
        assert ctx is not None
        return cls(
            trace_id=format(ctx.trace_id, "032x"),
            span_id=format(ctx.span_id, "016x"),
            parent_span_id=format(span.parent.span_id, "016x") if span.parent is not None else None,
            name=span.name,
            start_time_ns=span.start_time or 0,
            end_time_ns=span.end_time or 0,
            attributes=dict(span.attributes or {}),
            status_code={StatusCode.OK: STATUS_OK, StatusCode.ERROR: STATUS_ERROR}.get(
                span.status.status_code, STATUS_UNSET
            ),
            status_message=span.status.description,
            events=tuple(SpanEvent(e.name, dict(e.attributes or {}), e.timestamp or 0) for e in span.events),
            resource=dict(span.resource.attributes),
        )


_PROTO_OK, _PROTO_ERROR = ProtoStatus.STATUS_CODE_OK, ProtoStatus.STATUS_CODE_ERROR


def _has_marker_prefix(attributes: Mapping[str, Any]) -> bool:
    prefixes = sc.DIALECT_MARKER_PREFIXES
    return any(key.startswith(prefixes) for key in attributes)


def records_from_request(request: ExportTraceServiceRequest, *, lean: bool = False) -> Iterator[SpanRecord]:
    """Every span in an OTLP export request (``lean``: see :meth:`SpanRecord.from_proto`)."""
    for rs in request.resource_spans:
        resource = attributes_from_proto(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield SpanRecord.from_proto(span, resource, lean=lean)


def attributes_from_proto(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.value
        kind = value.WhichOneof("value")
        # Most attributes are strings: read inline, without a call per attribute.
        out[kv.key] = value.string_value if kind == "string_value" else _value_of(value, kind)
    return out


def any_value(value: AnyValue) -> Any:
    """An attribute value as a JSON value: a ``bytes_value`` is its base64 text, as OTLP JSON writes it (what
    the readers build from attribute values -- tool arguments, results, schemas -- is JSON, and stays
    writable as JSON).

    >>> any_value(AnyValue(kvlist_value={"values": [KeyValue(key="r", value=AnyValue(bytes_value=b"\\xff"))]}))
    {'r': '/w=='}
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":  # most attributes: tested first
        return value.string_value
    return _value_of(value, kind)


def _value_of(value: AnyValue, kind: str | None) -> Any:
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def key_value(key: str, value: Any) -> KeyValue:
    """An OTLP attribute (used by tests and by writers that build protobuf spans directly)."""
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, (list, tuple)):
        for item in value:
            kv.value.array_value.values.append(key_value("", item).value)
    else:
        kv.value.string_value = str(value)
    return kv
