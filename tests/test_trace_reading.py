"""A trace read as it grows (processor.trace_reading): the same runs as reading it whole, each span decoded once."""

from __future__ import annotations

import pytest
from conftest import DATA
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.ingest.span_record import records_from_request
from otel_agent_eval.ingest.spans import runs_from_records
from otel_agent_eval.instrument.recorded import RunSpanWriter
from otel_agent_eval.model import AgentRun
from otel_agent_eval.processor.assembly import ResourceSpansBatch, SpanEntry
from otel_agent_eval.processor.trace_reading import TraceReading

RUNS = DATA / "tau-bench" / "airline-gpt-4o-tasks-00-24.json"


def _entries(count: int) -> list[list[SpanEntry]]:
    """The spans of ``count`` recorded τ-bench runs, in the order the instrumentation ends them."""
    tools = load_tools(DATA / "tau-bench" / "airline-tools.json")
    runs = list(load_runs(RUNS, tools=tools))
    writer = RunSpanWriter(include_reference=False)
    out = []
    for run in [r for r in runs if isinstance(r, AgentRun)][:count]:
        request = encode_spans(writer.spans(run))
        out.append(ResourceSpansBatch.of(request.resource_spans).entries)
    writer.shutdown()
    return out


@pytest.fixture(scope="module")
def traces() -> list[list[SpanEntry]]:
    return _entries(4)


def _whole(entries: list[SpanEntry]) -> str:
    """The runs read from scratch, the way a trace was read before it was remembered (as text: the runs hold
    dicts, and repr compares them in full)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

    request = ExportTraceServiceRequest()
    for entry in entries:
        rs = ResourceSpans(resource=entry.resource)
        rs.scope_spans.add(scope=entry.scope).spans.append(entry.span)
        request.resource_spans.append(rs)
    return repr(runs_from_records(list(records_from_request(request))))


def test_a_growing_trace_reads_as_it_would_whole(traces: list[list[SpanEntry]]) -> None:
    for entries in traces:
        reading = TraceReading()
        for end in [*range(1, len(entries), 7), len(entries)]:  # looked at every few spans, then complete
            assert repr(reading.runs(entries[:end])) == _whole(entries[:end])
        assert reading.decoded == len(entries)  # however many looks, each span decoded once


def test_each_span_is_read_once(traces: list[list[SpanEntry]], monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_agent_eval.processor import trace_reading

    calls: list[str] = []
    real = trace_reading.read_span
    monkeypatch.setattr(trace_reading, "read_span", lambda record: calls.append(record.span_id) or real(record))
    entries = traces[0]
    reading = TraceReading()
    for end in range(1, len(entries) + 1):
        reading.runs(entries[:end])
    assert sorted(calls) == sorted(entry.span.span_id.hex() for entry in entries)


def test_each_look_judges_the_new_steps_and_those_the_last_look_found_new(traces: list[list[SpanEntry]]) -> None:
    entries = traces[1]
    reading = TraceReading()
    judged: dict[int, int] = {}
    previous: frozenset[int] = frozenset()
    for end in [*range(3, len(entries), 5), len(entries)]:
        [run] = reading.runs(entries[:end])
        before = {s.index for s in run.steps} - set(judged)  # steps no look has judged yet
        steps = reading.steps_to_judge(run)
        assert steps == before | previous  # the new ones, and those the last look judged as new
        for index in steps:
            judged[index] = judged.get(index, 0) + 1
        previous = frozenset(before)
        assert reading.steps_to_judge(run) == previous  # looked at again unchanged: only the last look's new
        previous = frozenset()  # ...and now nothing is new since, so the next look only adds the next steps
    [run] = reading.runs(entries)
    assert sorted(judged) == [step.index for step in run.steps]  # every step judged
    assert max(judged.values()) <= 2  # by two looks at most, however long the trace


def test_a_trace_without_agent_steps_has_no_runs() -> None:
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from otel_agent_eval.ingest.span_record import key_value

    span = Span(trace_id=b"t" * 16, span_id=b"h" * 8, name="GET /")
    span.attributes.append(key_value("http.route", "/"))
    reading = TraceReading()
    assert reading.runs([SpanEntry(Resource(), InstrumentationScope(), span)]) == []
    assert reading.decoded == 1
