"""Spans from other projects' own OpenAI instrumentors (OpenInference, OpenLLMetry), read and evaluated.

The same unmodified agent loop as in test_auto_openai.py, instrumented by them instead of by us. They make
one trace per model call (nothing ties the calls of a loop together), and each call's prompt carries the
conversation so far: the last call's run holds the whole loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llm_server import LLMServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_auto_openai import agent

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.model import AgentRun, AssistantMessage, ToolExecution, UserMessage


def _openinference() -> Any:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor()


def _openllmetry() -> Any:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor()


@pytest.fixture(params=[_openinference, _openllmetry], ids=["openinference", "openllmetry"])
def foreign(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setenv("TRACELOOP_TRACE_CONTENT", "true")  # OpenLLMetry's content switch (on by default)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = request.param()
    instrumentor.instrument(tracer_provider=provider)
    yield exporter
    instrumentor.uninstrument()
    provider.shutdown()


def last_run(exporter: InMemorySpanExporter) -> AgentRun:
    runs = runs_from_spans(exporter.get_finished_spans())
    assert len(runs) == 2  # one per model call
    return max(runs, key=lambda r: len(r.steps))


def test_their_spans_give_the_whole_loop(foreign: InMemorySpanExporter) -> None:
    with LLMServer() as server:
        agent(server, "no longer needed")
    run = last_run(foreign)
    assert [type(s) for s in run.steps] == [UserMessage, AssistantMessage, ToolExecution, AssistantMessage]
    call = run.steps[1]
    assert isinstance(call, AssistantMessage) and call.tool_calls[0].name == "cancel_order"
    assert call.tool_calls[0].arguments == {"order_id": "#W1", "reason": "no longer needed"}
    result = run.steps[2]
    assert (
        isinstance(result, ToolExecution)
        and result.call_id == call.tool_calls[0].id
        and "cancelled" in (result.result or "")
    )
    assert run.system_instructions == "You are a shop assistant."
    assert [t.name for t in run.tool_definitions] == ["cancel_order"]
    assert Engine().evaluate(run).findings == ()


def test_a_planted_failure_is_labelled(foreign: InMemorySpanExporter) -> None:
    with LLMServer() as server:
        agent(server, "because")  # a reason the tool's schema does not allow
    findings = Engine().evaluate(last_run(foreign)).findings
    assert ("wrong_arguments", "terminal") in {(f.mode, f.outcome) for f in findings}
