"""``encode_request`` writes spans back as an OTLP request on the wire, by hand: what protobuf reads from it is
the request the spans came in (labels included), for any shape of resources, scopes and spans."""

from __future__ import annotations

from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from otel_agent_eval.processor.assembly import ResourceSpansBatch, encode_request
from otel_agent_eval.processor.labelling import set_attributes

texts = st.text(max_size=40)
attributes = st.lists(st.builds(lambda k, v: KeyValue(key=k, value=AnyValue(string_value=v)), texts, texts), max_size=3)


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 3))):
        rs: ResourceSpans = request.resource_spans.add(schema_url=draw(texts))
        rs.resource.attributes.extend(draw(attributes))
        for _ in range(draw(st.integers(1, 3))):
            ss = rs.scope_spans.add(schema_url=draw(texts))
            ss.scope.name, ss.scope.version = draw(texts), draw(texts)
            for _ in range(draw(st.integers(1, 4))):
                span = ss.spans.add(
                    trace_id=draw(st.binary(min_size=16, max_size=16)),
                    span_id=draw(st.binary(min_size=8, max_size=8)),
                    name=draw(texts),
                    start_time_unix_nano=draw(st.integers(0, 2**63)),
                )
                span.attributes.extend(draw(attributes))
                # a long value: lengths past one byte of varint
                span.attributes.add(key="big", value=AnyValue(string_value="x" * draw(st.integers(0, 40_000))))
    return request


@fuzz(100)
@given(requests())
def test_the_spans_come_back_as_the_request_they_came_in(request: ExportTraceServiceRequest) -> None:
    batch = ResourceSpansBatch.of(request.resource_spans)
    assert ExportTraceServiceRequest.FromString(encode_request(batch.entries)) == request


@fuzz(50)
@given(requests(), texts)
def test_labels_written_on_the_spans_are_in_it(request: ExportTraceServiceRequest, label: str) -> None:
    batch = ResourceSpansBatch.of(request.resource_spans)
    for entry in batch.entries:
        set_attributes(entry.span, {"agent_eval.failure.mode": label})
    decoded = ExportTraceServiceRequest.FromString(encode_request(batch.entries))
    spans = [s for rs in decoded.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == len(batch.entries)
    assert all(
        any(kv.key == "agent_eval.failure.mode" and kv.value.string_value == label for kv in s.attributes)
        for s in spans
    )


def test_spans_of_several_requests_keep_their_own_resources() -> None:
    first, second = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    for request, service in ((first, "a"), (second, "b")):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
        rs.scope_spans.add().spans.add(trace_id=b"t" * 16, span_id=service.encode() * 8)
    entries = ResourceSpansBatch.of(first.resource_spans).entries + ResourceSpansBatch.of(second.resource_spans).entries
    decoded = ExportTraceServiceRequest.FromString(encode_request(entries))
    assert [rs.resource.attributes[0].value.string_value for rs in decoded.resource_spans] == ["a", "b"]
