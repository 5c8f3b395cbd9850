"""Span ingestion: runs inside runs, user-side tools, several tool results in one message, malformed values."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from otel_agent_eval.ingest.messages import ChatMessage, parse_genai_messages
from otel_agent_eval.ingest.span_record import SpanRecord, key_value
from otel_agent_eval.ingest.spans import runs_from_records, runs_from_request
from otel_agent_eval.model import (
    AgentRun,
    ApplicationOutcome,
    AssistantMessage,
    Reference,
    RunSource,
    Step,
    ToolCall,
    ToolExecution,
    UserMessage,
)

TRACE = "5b8efff798038103d269b633813fc60c"
T0 = 1_750_000_000_000_000_000
MS = 1_000_000


def sid(n: int) -> str:
    return f"{n:016x}"


def span(n: int, start: int, end: int, attributes: Mapping[str, Any], parent: int | None = None) -> SpanRecord:
    return SpanRecord(
        trace_id=TRACE,
        span_id=sid(n),
        parent_span_id=sid(parent) if parent is not None else None,
        name=str(attributes.get("gen_ai.operation.name", "span")),
        start_time_ns=T0 + start * MS,
        end_time_ns=T0 + end * MS,
        attributes=dict(attributes),
    )


def agent(name: str, **extra: Any) -> dict[str, Any]:
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name, **extra}


def text(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


def calls(*ids: str, role: str = "assistant") -> dict[str, Any]:
    return {
        "role": role,
        "parts": [{"type": "tool_call", "id": i, "name": f"f_{i}", "arguments": {"x": i}} for i in ids],
    }


def chat(prompt: list[dict[str, Any]], answer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.input.messages": json.dumps(prompt),
        "gen_ai.output.messages": json.dumps([answer]),
        **extra,
    }


def tool(name: str, call_id: str, result: str, **extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.call.arguments": "{}",
        "gen_ai.tool.call.result": result,
        **extra,
    }


def ours(kind: str, index: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {**attributes, "agent_eval.step.kind": kind, "agent_eval.step.index": index}


def describe(step: Step) -> tuple[Any, ...]:
    if isinstance(step, UserMessage):
        return ("user", step.index, step.content, tuple(c.id for c in step.tool_calls))
    if isinstance(step, AssistantMessage):
        return ("assistant", step.index, step.content, tuple(c.id for c in step.tool_calls))
    return ("tool", step.index, step.name, step.call_id, step.result, step.requested_by)


def to_request(records: list[SpanRecord]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for r in records:
        proto = ProtoSpan(
            trace_id=bytes.fromhex(r.trace_id),
            span_id=bytes.fromhex(r.span_id),
            parent_span_id=bytes.fromhex(r.parent_span_id) if r.parent_span_id else b"",
            name=r.name,
            start_time_unix_nano=r.start_time_ns,
            end_time_unix_nano=r.end_time_ns,
        )
        proto.attributes.extend(key_value(k, v) for k, v in r.attributes.items())
        scope.spans.append(proto)
    return request


# --- item 12: each agent span is its own run ----------------------------------------------------------------------


def test_sub_agent_inside_a_tool_is_a_run_of_its_own() -> None:
    main_prompt = [text("user", "Book me a trip to Paris")]
    spans = [
        span(1, 0, 100, agent("travel")),
        span(2, 10, 20, chat(main_prompt, calls("c1")), parent=1),
        span(3, 21, 60, tool("f_c1", "c1", "planned"), parent=1),
        span(4, 22, 59, agent("planner"), parent=3),
        span(5, 23, 30, chat([text("user", "Plan Paris")], text("assistant", "Day 1: Louvre")), parent=4),
        span(6, 31, 40, chat([text("user", "Plan Paris")], text("assistant", "Day 2: Orsay")), parent=4),
        span(
            7,
            61,
            70,
            chat(
                [
                    *main_prompt,
                    calls("c1"),
                    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "planned"}]},
                ],
                text("assistant", "Booked."),
            ),
            parent=1,
        ),
    ]
    for runs in (runs_from_records(spans), runs_from_request(to_request(spans))):
        assert [(r.agent_name, r.root_span_id, r.trace_id) for r in runs] == [
            ("travel", sid(1), TRACE),
            ("planner", sid(4), TRACE),
        ]
        main, sub = runs
        assert [describe(s) for s in main.steps] == [
            ("user", 0, "Book me a trip to Paris", ()),
            ("assistant", 1, None, ("c1",)),
            ("tool", 2, "f_c1", "c1", "planned", "assistant"),
            ("assistant", 3, "Booked.", ()),
        ]
        assert [describe(s) for s in sub.steps] == [
            ("user", 0, "Plan Paris", ()),
            ("assistant", 1, "Day 1: Louvre", ()),
            ("assistant", 2, "Day 2: Orsay", ()),
        ]
        assert (sub.start_time_ns, sub.end_time_ns) == (T0 + 22 * MS, T0 + 59 * MS)


def test_our_own_nested_runs_keep_their_own_step_indices() -> None:
    spans = [
        span(1, 0, 100, agent("travel")),
        span(2, 1, 2, ours("user", 0, {"gen_ai.input.messages": json.dumps([text("user", "Trip?")])}), parent=1),
        span(3, 3, 4, ours("assistant", 1, chat([], calls("c1"))), parent=1),
        span(4, 5, 50, ours("tool", 2, tool("f_c1", "c1", "planned")), parent=1),
        span(5, 6, 49, agent("planner"), parent=4),
        span(6, 7, 8, ours("user", 0, {"gen_ai.input.messages": json.dumps([text("user", "Plan")])}), parent=5),
        span(7, 9, 10, ours("assistant", 1, chat([], text("assistant", "Louvre"))), parent=5),
        span(8, 51, 52, ours("assistant", 3, chat([], text("assistant", "Booked."))), parent=1),
    ]
    main, sub = runs_from_records(spans)
    assert [describe(s) for s in main.steps] == [
        ("user", 0, "Trip?", ()),
        ("assistant", 1, None, ("c1",)),
        ("tool", 2, "f_c1", "c1", "planned", "assistant"),
        ("assistant", 3, "Booked.", ()),
    ]
    assert [describe(s) for s in sub.steps] == [("user", 0, "Plan", ()), ("assistant", 1, "Louvre", ())]
    assert [s.span_id for s in sub.steps] == [sid(6), sid(7)]


def test_sibling_agents_in_one_trace_are_two_runs() -> None:
    spans = [
        span(1, 0, 100, {"http.request.method": "POST"}),
        span(2, 1, 40, agent("triage"), parent=1),
        span(3, 2, 10, chat([text("user", "Refund?")], text("assistant", "Handing over.")), parent=2),
        span(4, 41, 90, agent("refunds"), parent=1),
        span(5, 42, 50, chat([text("user", "Refund?")], text("assistant", "Refunded.")), parent=4),
    ]
    runs = runs_from_records(spans)
    assert [(r.agent_name, [describe(s) for s in r.steps]) for r in runs] == [
        ("triage", [("user", 0, "Refund?", ()), ("assistant", 1, "Handing over.", ())]),
        ("refunds", [("user", 0, "Refund?", ()), ("assistant", 1, "Refunded.", ())]),
    ]


def test_duplicate_step_indices_are_kept_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    spans = [
        span(1, 0, 100, agent("a")),
        span(2, 1, 2, ours("user", 0, {"gen_ai.input.messages": json.dumps([text("user", "first")])}), parent=1),
        span(3, 3, 4, ours("user", 0, {"gen_ai.input.messages": json.dumps([text("user", "second")])}), parent=1),
    ]
    with caplog.at_level(logging.WARNING, logger="otel_agent_eval.ingest.spans"):
        [run] = runs_from_records(spans)
    assert [describe(s) for s in run.steps] == [("user", 0, "first", ()), ("user", 0, "second", ())]
    assert [r.getMessage() for r in caplog.records] == [
        f"trace {TRACE}: several step spans carry agent_eval.step.index [0]"
    ]


# --- item 1: tools the user runs -----------------------------------------------------------------------------------


USER_CALL = {
    "role": "user",
    "parts": [
        {"type": "text", "content": "Turning it off."},
        {"type": "tool_call", "id": "u1", "name": "toggle_airplane_mode", "arguments": {}},
    ],
}


def test_user_tool_calls_and_user_requested_tools_in_our_spans() -> None:
    spans = [
        span(1, 0, 100, agent("telecom")),
        span(2, 1, 2, ours("user", 0, {"gen_ai.input.messages": json.dumps([USER_CALL])}), parent=1),
        span(
            3,
            3,
            4,
            ours("tool", 1, tool("toggle_airplane_mode", "u1", "OFF", **{"agent_eval.tool.requested_by": "user"})),
            parent=1,
        ),
    ]
    [run] = runs_from_records(spans)
    user, executed = run.steps
    assert isinstance(user, UserMessage)
    assert (user.content, user.tool_calls) == (
        "Turning it off.",
        (ToolCall(id="u1", name="toggle_airplane_mode", arguments={}),),
    )
    assert isinstance(executed, ToolExecution) and executed.requested_by == "user"


def test_user_tool_calls_rebuilt_from_prompts() -> None:
    response = {"role": "tool", "parts": [{"type": "tool_call_response", "id": "u1", "response": "OFF"}]}
    spans = [
        span(1, 0, 100, agent("telecom")),
        span(2, 10, 20, chat([USER_CALL, response], text("assistant", "Great, it is off.")), parent=1),
    ]
    [run] = runs_from_records(spans)
    assert [describe(s) for s in run.steps] == [
        ("user", 0, "Turning it off.", ("u1",)),
        ("tool", 1, "toggle_airplane_mode", "u1", "OFF", "user"),
        ("assistant", 2, "Great, it is off.", ()),
    ]
    # A tool span of another instrumentation that says the user asked for it: a step where it ran.
    requested = tool("reboot_device", "u9", "rebooted", **{"agent_eval.tool.requested_by": "user"})
    spans.append(span(3, 5, 6, requested, parent=1))
    [run] = runs_from_records(spans)
    assert [describe(s) for s in run.steps] == [
        ("tool", 0, "reboot_device", "u9", "rebooted", "user"),
        ("user", 1, "Turning it off.", ("u1",)),
        ("tool", 2, "toggle_airplane_mode", "u1", "OFF", "user"),
        ("assistant", 3, "Great, it is off.", ()),
    ]


# --- item 14: several tool results in one message -----------------------------------------------------------------


def test_several_tool_results_in_one_message_are_one_step_each() -> None:
    results = {
        "role": "user",
        "parts": [
            {"type": "tool_call_response", "id": "a", "response": "result a"},
            {"type": "tool_call_response", "id": "b", "response": {"value": "b"}},
        ],
    }
    assert parse_genai_messages(results, field="m") == [
        ChatMessage(role="tool", content="result a", tool_call_id="a"),
        ChatMessage(role="tool", content='{"value": "b"}', tool_call_id="b"),
    ]
    with_text = {**results, "parts": [*results["parts"], {"type": "text", "content": "thanks"}]}
    assert [(m.role, m.tool_call_id, m.content) for m in parse_genai_messages(with_text, field="m")] == [
        ("tool", "a", "result a"),
        ("tool", "b", '{"value": "b"}'),
        ("user", None, "thanks"),
    ]
    spans = [
        span(1, 0, 100, agent("a")),
        span(2, 10, 20, chat([text("user", "Do a and b")], calls("a", "b")), parent=1),
        span(
            3,
            30,
            40,
            chat([text("user", "Do a and b"), calls("a", "b"), results], text("assistant", "Done.")),
            parent=1,
        ),
    ]
    [run] = runs_from_records(spans)
    assert [describe(s) for s in run.steps] == [
        ("user", 0, "Do a and b", ()),
        ("assistant", 1, None, ("a", "b")),
        ("tool", 2, "f_a", "a", "result a", "assistant"),
        ("tool", 3, "f_b", "b", '{"value": "b"}', "assistant"),
        ("assistant", 4, "Done.", ()),
    ]
    assert [s.arguments for s in run.steps if isinstance(s, ToolExecution)] == [{"x": "a"}, {"x": "b"}]


# --- items 21, 22, 36: malformed values are left out and logged, never raised ----------------------------------


def test_malformed_agent_eval_values_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    root = agent(
        "a",
        **{
            "agent_eval.run.success": True,
            "agent_eval.run.reward": "high",
            "agent_eval.reference.reward": "abc",
            "agent_eval.reference.outputs": "abc",
            "agent_eval.reference.actions": "[]",
            "agent_eval.source.file": "runs.json",
            "agent_eval.source.index": "x",
        },
    )
    user = ours("user", math.nan, {"gen_ai.input.messages": json.dumps([text("user", "hi")])})
    spans = [
        span(1, 0, 100, root),
        span(2, 1, 2, user, parent=1),
        span(3, 3, 4, ours("assistant", 1, chat([], text("assistant", "hello"))), parent=1),
    ]
    for read in (runs_from_records, lambda s: runs_from_request(to_request(s))):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="otel_agent_eval.ingest.dialects"):
            [run] = read(spans)
        assert [describe(s) for s in run.steps] == [("user", 0, "hi", ()), ("assistant", 1, "hello", ())]
        assert run.outcome == ApplicationOutcome(success=True, reward=None)
        assert run.reference == Reference(reward=None, actions=(), outputs=())
        assert run.source == RunSource(file="runs.json", index=0, id=None)
        assert [r.getMessage() for r in caplog.records] == [
            f"span {sid(1)} (trace {TRACE}): agent_eval.run.reward is not a number (str); "
            "agent_eval.reference.outputs is a str, not a list; agent_eval.reference.reward is not a number (str); "
            "agent_eval.source.index is not an integer (str)",
            f"span {sid(2)} (trace {TRACE}): agent_eval.step.index is not an integer (float)",
        ]


@pytest.mark.parametrize(
    ("value", "outcome"),
    [("false", ApplicationOutcome(success=False)), ("maybe", None), (1, None), (False, ApplicationOutcome(False))],
)
def test_run_success_values(value: Any, outcome: ApplicationOutcome | None) -> None:
    spans = [
        span(1, 0, 100, agent("a", **{"agent_eval.run.success": value})),
        span(2, 1, 2, chat([text("user", "hi")], text("assistant", "hello")), parent=1),
    ]
    [run] = runs_from_records(spans)
    assert run.outcome == outcome


def test_problems_are_logged_without_content(caplog: pytest.LogCaptureFixture) -> None:
    prompt = [
        {"role": "robot", "parts": [{"type": "text", "content": "SECRET-PROMPT"}]},
        text("user", "hello"),
    ]
    bad_tools = [{"type": "function", "name": "ok"}, {"type": "function", "description": "SECRET-DESCRIPTION"}]
    spans = [
        span(1, 0, 100, agent("a")),
        span(
            2,
            1,
            2,
            chat(prompt, text("assistant", "hi"), **{"gen_ai.tool.definitions": json.dumps(bad_tools)}),
            parent=1,
        ),
        span(3, 3, 4, {**tool("t", "c1", "SECRET-RESULT"), "gen_ai.tool.call.arguments": 5}, parent=1),
    ]
    with caplog.at_level(logging.WARNING, logger="otel_agent_eval.ingest.dialects"):
        [run] = runs_from_records(spans)
    assert run.tool_definitions == ()  # one bad definition: the list is not trusted
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool"]
    assert [r.getMessage() for r in caplog.records] == [
        f"span {sid(2)} (trace {TRACE}): gen_ai.input.messages[0].role: role 'robot' is not user, assistant, tool or "
        "system; gen_ai.tool.definitions[1]: tool definition has no 'name'",
        f"span {sid(3)} (trace {TRACE}): arguments: tool arguments are a int, not a JSON object or its text",
    ]
    assert "SECRET" not in caplog.text


def test_explicit_call_id_is_not_matched_by_position() -> None:
    """A tool result naming a call that does not exist is not pinned on whatever call is open."""
    from otel_agent_eval.ingest.messages import messages_to_steps

    asked = ChatMessage(role="assistant", tool_calls=(ToolCall(id="c1", name="f", arguments={"a": 1}),))
    _, steps = messages_to_steps([asked, ChatMessage(role="tool", content="r", tool_call_id="zz")])
    assert describe(steps[1]) == ("tool", 1, "unknown", "zz", "r", "assistant")
    assert isinstance(steps[1], ToolExecution) and steps[1].arguments is None


def test_runs_are_agent_runs() -> None:
    assert runs_from_records([]) == []
    run = runs_from_records([span(1, 0, 1, chat([text("user", "q")], text("assistant", "a")))])[0]
    assert isinstance(run, AgentRun) and run.root_span_id == sid(1)


def test_a_model_span_inside_a_model_span_is_the_same_call() -> None:
    """An SDK that traces itself under an instrumentor's span (or two instrumentations of one client): the same
    prompt, one step. A model span under one that had already ended (an auto-instrumented loop's later calls
    hang under its first), or under one left open with another prompt (a stream never finished), is a step of
    its own."""
    prompt = [text("user", "hi")]
    later = [
        *prompt,
        calls("c1"),
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "ok"}]},
    ]
    records = [
        span(1, 0, 30, chat(prompt, calls("c1"))),  # left open (a stream never finished): ends late
        span(2, 1, 9, chat(prompt, calls("c1")), parent=1),  # the SDK's own span of the same call
        span(3, 11, 12, tool("f_c1", "c1", "ok")),
        span(4, 13, 20, chat(later, text("assistant", "done")), parent=1),
        span(5, 14, 19, chat(later, text("assistant", "done")), parent=4),
        span(6, 15, 16, {"gen_ai.operation.name": "chat"}, parent=4),  # no content at all
    ]
    [run] = runs_from_records(records)
    assert [describe(s)[0] for s in run.steps] == ["user", "assistant", "tool", "assistant"]
