"""The in-process guard, the OpenAI-loop helper, and focused checks against full evaluation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_agent_eval import Guard
from otel_agent_eval.hook.loops import GuardStopped, OpenAILoopGuard, RetryPolicy

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "reason": {"enum": ["no longer needed"]}},
                "required": ["order_id", "reason"],
            },
        },
    }
]
HISTORY = [{"role": "user", "content": "Cancel order #W1, I no longer need it."}]


def proposal(reason: str) -> dict[str, Any]:
    arguments = json.dumps({"order_id": "#W1", "reason": reason})
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "cancel_order", "arguments": arguments}}],
    }


def test_guard_sends_a_wrong_call_back_with_a_critique() -> None:
    guard = Guard(tools=TOOLS)
    verdict = guard.check(HISTORY, proposal("because"))
    assert verdict.action == "revise" and not verdict.allowed
    assert [f.mode for f in verdict.findings] == ["wrong_arguments"] and verdict.findings[0].step == 1
    assert "reason" in verdict.critique
    assert guard.check(HISTORY, proposal("no longer needed")).allowed


def test_unknown_tool_is_a_finding_not_a_crash() -> None:
    bad = {
        "role": "assistant",
        "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "delete_everything", "arguments": "{}"}}],
    }
    verdict = Guard(tools=TOOLS).check(HISTORY, bad)
    assert verdict.action == "revise" and verdict.findings[0].mode == "wrong_tool"


def test_verdicts_are_events_on_the_current_span(memory_spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = memory_spans
    with provider.get_tracer("t").start_as_current_span("chat m"):
        Guard(tools=TOOLS).check(HISTORY, proposal("because"))
    [span] = exporter.get_finished_spans()
    [event] = span.events
    assert event.name == "agent_eval.guard.verdict" and event.attributes is not None
    assert event.attributes["agent_eval.guard.action"] == "revise"
    assert list(event.attributes["agent_eval.guard.modes"]) == ["wrong_arguments"]  # type: ignore[arg-type]
    assert "because" in str(event.attributes["agent_eval.guard.critique"])


def test_the_verdicts_critique_follows_the_content_policy(
    memory_spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    from otel_agent_eval.instrument import ContentPolicy, set_default_policy

    provider, exporter = memory_spans
    for policy in (ContentPolicy(capture=False), ContentPolicy(redact=lambda text: text.replace("because", "<r>"))):
        set_default_policy(policy)
        try:
            with provider.get_tracer("t").start_as_current_span("chat m"):
                Guard(tools=TOOLS).check(HISTORY, proposal("because"))
        finally:
            set_default_policy(None)
    off, redacted = (span.events[0].attributes or {} for span in exporter.get_finished_spans())
    assert "agent_eval.guard.critique" not in off and off["agent_eval.guard.action"] == "revise"
    assert "because" not in str(redacted["agent_eval.guard.critique"]) and "<r>" in str(
        redacted["agent_eval.guard.critique"]
    )


def test_loop_helper_revises_then_lets_through_or_stops() -> None:
    loop = OpenAILoopGuard(Guard(tools=TOOLS), RetryPolicy(max_revisions=1, then="allow"))
    answers = loop.review(HISTORY, proposal("because"))
    assert answers is not None and answers[0]["tool_call_id"] == "c1" and "Not executed" in answers[0]["content"]
    assert loop.review(HISTORY, proposal("because")) is None  # revised once already: let through
    assert loop.review(HISTORY, proposal("no longer needed")) is None
    strict = OpenAILoopGuard(Guard(tools=TOOLS), RetryPolicy(max_revisions=0, then="stop"))
    with pytest.raises(GuardStopped):
        strict.review(HISTORY, proposal("because"))
    assert strict.review(HISTORY, {"role": "assistant", "content": "Hello"}) is None  # no call: nothing to check


@pytest.mark.parametrize("path", ["TAU_BENCH", "TAU2"])
def test_focused_checks_find_what_a_full_evaluation_finds_at_that_step(path: str) -> None:
    """``Engine.check`` lets detectors skip work for other steps; it must never change what is found at the
    proposed one. Every assistant step of real runs, checked both ways."""
    import conftest

    from otel_agent_eval.evaluate import Engine, PackLibrary
    from otel_agent_eval.ingest.recorded import load_runs, load_tools
    from otel_agent_eval.model import AgentRun, AssistantMessage

    file = getattr(conftest, path)
    tools = load_tools(
        file.parent.parent / "tau-bench" / ("airline-tools.json" if "airline" in file.name else "retail-tools.json")
    )
    engine = Engine(packs=PackLibrary.with_builtins())
    checked = found = 0
    for run in load_runs(file, tools=tools):
        assert isinstance(run, AgentRun)
        for position, step in enumerate(run.steps):
            if not isinstance(step, AssistantMessage):
                continue
            focused = engine.check(run.prefix(position), step)
            whole = [f for f in engine.findings(run.prefix(position + 1), complete=False) if f.step == step.index]
            assert sorted(map(repr, focused)) == sorted(map(repr, whole)), (run.run_id, step.index)
            checked += 1
            found += len(focused)
    assert checked > 500 and found > 20  # the comparison saw real findings, not only empty lists


def test_a_schema_that_refers_to_itself_does_not_send_a_step_back() -> None:
    from otel_agent_eval import Guard
    from otel_agent_eval.model import AgentRun, AssistantMessage, ToolCall, UserMessage

    guard = Guard(tools=[{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#"}}}])
    history = AgentRun(steps=(UserMessage(index=0, content="hi"),))
    verdict = guard.check(history, AssistantMessage(index=1, tool_calls=(ToolCall("c1", "f", {"a": 1}),)))
    assert verdict.action == "allow"
