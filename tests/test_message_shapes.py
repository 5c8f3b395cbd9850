"""Message shapes real agents emit are read as what they say (issue 9, item 3).

* assistant text an agent framework wrapped in a JSON object (``{"message": "..."}``, ``{"thought": "...",
  "response": "..."}``) is the text the user sees, its reasoning kept apart; any other JSON is left as written;
* reasoning beside an answer (``reasoning_content``, ``reasoning``, ``thinking``, Anthropic ``thinking``
  blocks, GenAI ``reasoning`` parts) is the step's ``reasoning``, never its text;
* several tool calls in one message are all kept, in order;
* blank text beside tool calls is no message to the user (``None``);

from recorded files (OpenAI messages, τ-bench, τ²) and from spans (GenAI parts, OpenInference attributes).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import RECORDED_FILES, TAU2, TAU_BENCH

from otel_agent_eval import Guard
from otel_agent_eval.evaluate import Engine, Finding
from otel_agent_eval.ingest.messages import (
    ChatMessage,
    assistant_text,
    messages_to_steps,
    parse_genai_messages,
    parse_openai_message,
    read_as_said,
)
from otel_agent_eval.ingest.recorded import load_runs, runs_from_data
from otel_agent_eval.ingest.span_record import SpanRecord
from otel_agent_eval.ingest.spans import runs_from_records, runs_from_spans
from otel_agent_eval.instrument.content import ContentPolicy
from otel_agent_eval.instrument.recorded import RunSpanWriter
from otel_agent_eval.model import AgentRun, AssistantMessage, Step, ToolExecution, UserMessage

SAID = "Your order #W2378156 is cancelled; the refund of $54.04 goes back to your Visa in 5-7 business days."
THOUGHT = "The order is pending and the user confirmed, so the cancellation went through."


def _call(call_id: str, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


# --- the reading of one text --------------------------------------------------------------------------------

WRAPPED = [
    json.dumps({"message": SAID}),
    json.dumps({"response": SAID}),
    json.dumps({"content": SAID}),
    json.dumps({"text": SAID}),
    json.dumps({"answer": SAID}),
    json.dumps({"reply": SAID}),
    json.dumps({"final_answer": SAID}),
    json.dumps({"role": "assistant", "content": SAID}),  # a whole message serialised as the content
    json.dumps({"type": "text", "text": SAID}),  # a content part serialised as the content
    json.dumps({"response": {"message": SAID}}),  # one wrapper inside another
    "  \n" + json.dumps({"message": SAID}, indent=2) + "\n",
]


@pytest.mark.parametrize("content", WRAPPED)
def test_a_wrapped_text_is_the_text_it_wraps(content: str) -> None:
    assert assistant_text(content) == (SAID, None)


@pytest.mark.parametrize(
    ("content", "reasoning"),
    [
        (json.dumps({"thought": THOUGHT, "message": SAID}), THOUGHT),
        (json.dumps({"message": SAID, "reasoning": THOUGHT}), THOUGHT),
        (json.dumps({"thinking": THOUGHT, "response": SAID}), THOUGHT),
        (json.dumps({"rationale": THOUGHT, "answer": SAID}), THOUGHT),
        (json.dumps({"thoughts": "First.", "reasoning": "Second.", "text": SAID}), "First.\n\nSecond."),
        (json.dumps({"thought": "Outer.", "response": {"thought": "Inner.", "message": SAID}}), "Outer.\n\nInner."),
        (json.dumps({"thought": "", "message": SAID}), None),
        (json.dumps({"thought": None, "message": SAID}), None),
    ],
)
def test_the_reasoning_a_wrapper_holds_is_kept_apart(content: str, reasoning: str | None) -> None:
    assert assistant_text(content) == (SAID, reasoning)


NOT_WRAPPED = [
    SAID,
    json.dumps({"order_id": "#W2378156", "status": "cancelled"}),  # data the agent shows the user
    json.dumps({"message": SAID, "order_id": "#W2378156"}),  # a wrapper with more than text and reasoning
    json.dumps({"message": SAID, "text": "other"}),  # two texts: which one the user saw is not known
    json.dumps({"message": 42}),
    json.dumps({"message": [SAID]}),
    json.dumps({"message": None}),
    json.dumps({"thought": THOUGHT}),  # reasoning and nothing said
    json.dumps({"thought": ["a", "b"], "message": SAID}),
    json.dumps({"role": "user", "content": SAID}),
    json.dumps({"type": "image", "text": SAID}),
    json.dumps({"role": "assistant", "content": None, "tool_calls": []}),
    json.dumps([{"message": SAID}]),  # a list, not an object
    json.dumps(SAID),  # a JSON string
    "```json\n" + json.dumps({"message": SAID}) + "\n```",  # a code block shown to the user
    "Here it is: " + json.dumps({"message": SAID}),
    '{"message": "unterminated',
    "{not json}",
    "{}",
    json.dumps({"a": {"b": {"c": {"message": SAID}}}}),
    json.dumps({"response": {"response": {"response": {"response": SAID}}}}),  # wrapped deeper than any framework
]


@pytest.mark.parametrize("content", NOT_WRAPPED)
def test_other_text_and_other_json_are_kept_as_written(content: str) -> None:
    assert assistant_text(content) == (content, None)
    assert assistant_text(content, tool_calls=True) == (content, None)


@pytest.mark.parametrize("blank", ["", " ", "\n\n", "\t \n"])
def test_blank_text_beside_tool_calls_is_nothing_said(blank: str) -> None:
    assert assistant_text(blank, tool_calls=True) == (None, None)
    assert assistant_text(blank) == (blank, None)  # an empty answer alone is evidence (model_output reports it)
    assert assistant_text(json.dumps({"thought": THOUGHT, "message": blank}), tool_calls=True) == (None, THOUGHT)
    assert assistant_text(None, tool_calls=True) == (None, None)


def test_a_message_is_read_once() -> None:
    """A wrapper's text that is itself a wrapper is what the user saw: reading the message again unwraps
    nothing more (messages read from spans go through two readers)."""
    inner = json.dumps({"message": SAID})
    once = read_as_said(ChatMessage(role="assistant", content=json.dumps({"message": inner})))
    assert once.content == inner
    assert read_as_said(once) is once
    [_, step] = messages_to_steps([ChatMessage(role="user", content="hi"), once])[1]
    assert isinstance(step, AssistantMessage) and step.content == inner


def test_user_and_tool_messages_are_not_unwrapped() -> None:
    wrapped = json.dumps({"message": SAID})
    messages = [
        parse_openai_message({"role": "user", "content": wrapped}, field="m[0]"),
        parse_openai_message({"role": "assistant", "tool_calls": [_call("c1", "f", {})]}, field="m[1]"),
        parse_openai_message({"role": "tool", "tool_call_id": "c1", "content": wrapped}, field="m[2]"),
    ]
    _, steps = messages_to_steps(messages)
    assert steps[0].content == wrapped  # type: ignore[union-attr]
    assert steps[2].result == wrapped  # type: ignore[union-attr]


# --- recorded OpenAI-style runs -----------------------------------------------------------------------------

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a retail agent."},
    {"role": "user", "content": "Cancel order #W2378156 and #W4817420, I ordered by mistake."},
    {
        "role": "assistant",
        "content": "",  # OpenAI-compatible servers write "" beside tool calls
        "reasoning_content": "Both orders first: their status decides whether they can be cancelled.",
        "tool_calls": [
            _call("call_a", "get_order_details", {"order_id": "#W2378156"}),
            _call("call_b", "get_order_details", {"order_id": "#W4817420"}),
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": '{"order_id": "#W2378156", "status": "pending"}'},
    {"role": "tool", "tool_call_id": "call_b", "content": '{"order_id": "#W4817420", "status": "pending"}'},
    {
        "role": "assistant",
        "content": json.dumps({"thought": "Both are pending.", "message": "Both are pending. Cancel both? (yes/no)"}),
    },
    {"role": "user", "content": "yes"},
    {
        "role": "assistant",
        "content": "  \n",
        "tool_calls": [
            _call("call_c", "cancel_pending_order", {"order_id": "#W2378156", "reason": "ordered by mistake"}),
            _call("call_d", "cancel_pending_order", {"order_id": "#W4817420", "reason": "ordered by mistake"}),
            _call("call_e", "get_order_details", {"order_id": "#W2378156"}),
        ],
    },
    {"role": "tool", "tool_call_id": "call_c", "content": '{"status": "cancelled"}'},
    {"role": "tool", "tool_call_id": "call_d", "content": '{"status": "cancelled"}'},
    {"role": "tool", "tool_call_id": "call_e", "content": '{"status": "cancelled"}'},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": THOUGHT, "signature": "EqQBCgIYAhIM"},
            {"type": "text", "text": json.dumps({"message": SAID})},
        ],
    },
]


def _check_conversation(run: AgentRun) -> None:
    assistants = [s for s in run.steps if isinstance(s, AssistantMessage)]
    assert [a.index for a in assistants] == [2, 5, 7, 11]
    first, ask, cancel, final = assistants
    assert first.content is None
    assert first.reasoning == "Both orders first: their status decides whether they can be cancelled."
    assert [(c.id, c.arguments) for c in first.tool_calls] == [
        ("call_a", {"order_id": "#W2378156"}),
        ("call_b", {"order_id": "#W4817420"}),
    ]
    assert (ask.content, ask.reasoning) == ("Both are pending. Cancel both? (yes/no)", "Both are pending.")
    assert cancel.content is None and cancel.reasoning is None
    assert [c.id for c in cancel.tool_calls] == ["call_c", "call_d", "call_e"]
    assert [c.name for c in cancel.tool_calls] == ["cancel_pending_order"] * 2 + ["get_order_details"]
    assert (final.content, final.reasoning) == (SAID, THOUGHT)
    executions = [s for s in run.steps if isinstance(s, ToolExecution)]
    assert [(e.call_id, e.name) for e in executions] == [
        ("call_a", "get_order_details"),
        ("call_b", "get_order_details"),
        ("call_c", "cancel_pending_order"),
        ("call_d", "cancel_pending_order"),
        ("call_e", "get_order_details"),
    ]


def test_an_openai_file_reads_as_said(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"id": "r1", "messages": CONVERSATION}))
    [run] = list(load_runs(path))
    assert isinstance(run, AgentRun)
    _check_conversation(run)


def test_reasoning_fields_of_each_provider() -> None:
    for key in ("reasoning_content", "reasoning", "thinking"):
        msg = parse_openai_message({"role": "assistant", "content": SAID, key: THOUGHT}, field="m")
        assert (msg.content, msg.reasoning) == (SAID, THOUGHT)
    # GenAI reasoning parts inside an OpenAI content list are reasoning, not text
    parts = [{"type": "reasoning", "content": THOUGHT}, {"type": "text", "text": SAID}]
    msg = parse_openai_message({"role": "assistant", "content": parts}, field="m")
    assert (msg.content, msg.reasoning) == (SAID, THOUGHT)
    # redacted thinking holds no readable text
    parts = [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}, {"type": "text", "text": SAID}]
    msg = parse_openai_message({"role": "assistant", "content": parts}, field="m")
    assert (msg.content, msg.reasoning) == (SAID, None)
    # a field that is null or blank (τ² writes "reasoning": null) is no reasoning
    for value in (None, "", "  ", 3, {"effort": "high"}):
        msg = parse_openai_message({"role": "assistant", "content": SAID, "reasoning": value}, field="m")
        assert msg.reasoning is None


def test_content_given_as_an_object_is_read_as_its_text() -> None:
    msg = parse_openai_message({"role": "assistant", "content": {"thought": THOUGHT, "message": SAID}}, field="m")
    [step] = messages_to_steps([msg])[1]
    assert isinstance(step, AssistantMessage)
    assert (step.content, step.reasoning) == (SAID, THOUGHT)


def _tau_bench_run_with(messages: list[dict[str, Any]]) -> AgentRun:
    data = json.loads(TAU_BENCH.read_text())[:1]
    data[0]["traj"] = data[0]["traj"][:2] + messages
    [run] = list(runs_from_data(data, str(TAU_BENCH), format="tau-bench"))
    assert isinstance(run, AgentRun)
    return run


def test_tau_bench_shapes() -> None:
    run = _tau_bench_run_with(
        [
            {
                "role": "assistant",
                "content": " ",
                "tool_calls": [
                    _call("c1", "get_user_details", {"user_id": "mia_li_3668"}),
                    _call("c2", "get_reservation_details", {"reservation_id": "NO6JO3"}),
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "get_user_details", "content": "{}"},
            {"role": "tool", "tool_call_id": "c2", "name": "get_reservation_details", "content": "{}"},
            {"role": "assistant", "content": json.dumps({"thought": THOUGHT, "response": SAID})},
        ]
    )
    calls, *_, final = run.steps[1:]
    assert isinstance(calls, AssistantMessage) and calls.content is None
    assert [c.id for c in calls.tool_calls] == ["c1", "c2"]
    assert isinstance(final, AssistantMessage) and (final.content, final.reasoning) == (SAID, THOUGHT)


def test_tau2_shapes() -> None:
    data = json.loads(TAU2.read_text())
    sim = data["simulations"][0]
    messages = sim["messages"]
    at = next(i for i, m in enumerate(messages) if m["role"] == "assistant" and not m.get("tool_calls") and i > 0)
    messages[at] = {
        **messages[at],
        "content": json.dumps({"thought": "Verify identity first.", "message": messages[at]["content"]}),
        "raw_data": {"finish_reason": "stop", "message": {"reasoning_content": "The policy asks for it."}},
    }
    data["simulations"] = [sim]
    original = json.loads(TAU2.read_text())["simulations"][0]["messages"][at]["content"]
    [run] = list(runs_from_data(data, str(TAU2)))
    assert isinstance(run, AgentRun)
    step = next(s for s in run.steps if s.index == at)
    assert isinstance(step, AssistantMessage)
    assert step.content == original
    assert step.reasoning == "The policy asks for it.\n\nVerify identity first."
    assert step.finish_reason == "stop"


# --- the real runs --------------------------------------------------------------------------------------------


def _raw_runs(path: Path) -> list[list[dict[str, Any]]]:
    data = json.loads(path.read_text())
    return [r["traj"] for r in data] if isinstance(data, list) else [s["messages"] for s in data["simulations"]]


@pytest.mark.parametrize("path", RECORDED_FILES, ids=lambda p: p.name)
def test_real_assistant_messages_read_as_written(path: Path) -> None:
    """No real message is wrapped or blank beside calls: each step says what the message said, with every
    call in order, and no reasoning (the files record none)."""
    runs = [r for r in load_runs(path) if isinstance(r, AgentRun)]
    raws = _raw_runs(path)
    assert len(runs) == len(raws)
    seen = several = 0
    for run, raw in zip(runs, raws, strict=True):
        for step in run.steps:
            if not isinstance(step, AssistantMessage):
                continue
            message = raw[step.index]
            seen += 1
            assert step.content == message["content"]
            assert step.reasoning is None
            names = [(c.get("function") or c)["name"] for c in message.get("tool_calls") or []]
            assert [c.name for c in step.tool_calls] == names
            assert [c.id for c in step.tool_calls] == [c["id"] for c in message.get("tool_calls") or []]
            several += len(names) > 1
    assert seen > 400
    if path != TAU_BENCH:
        assert several > 10  # gpt-4.1 often asks for several tools at once


def test_real_runs_survive_a_json_wrapping_agent() -> None:
    """Every assistant text of a real file, wrapped the way a JSON-output agent writes it, reads back as the
    same run (text, calls and all)."""
    data = json.loads(TAU2.read_text())
    wrapped = copy.deepcopy(data)
    for sim in wrapped["simulations"]:
        for m in sim["messages"]:
            if m["role"] == "assistant" and isinstance(m["content"], str):
                m["content"] = json.dumps({"thought": "...", "message": m["content"]})
    plain = [r for r in runs_from_data(data, str(TAU2)) if isinstance(r, AgentRun)]
    read = [r for r in runs_from_data(wrapped, str(TAU2)) if isinstance(r, AgentRun)]
    for a, b in zip(plain, read, strict=True):
        assert [getattr(s, "content", None) for s in a.steps] == [getattr(s, "content", None) for s in b.steps]
        assert [getattr(s, "tool_calls", None) for s in a.steps] == [getattr(s, "tool_calls", None) for s in b.steps]


# --- spans ----------------------------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_750_000_000_000_000_000
MS = 1_000_000


def _span(n: int, attributes: Mapping[str, Any], parent: int | None = 1) -> SpanRecord:
    return SpanRecord(
        trace_id=TRACE,
        span_id=f"{n:016x}",
        parent_span_id=f"{parent:016x}" if parent is not None else None,
        name=str(attributes.get("gen_ai.operation.name", "span")),
        start_time_ns=T0 + n * MS,
        end_time_ns=T0 + n * MS + MS // 2,
        attributes=dict(attributes),
    )


USER = {"role": "user", "parts": [{"type": "text", "content": "Cancel #W2378156 and #W4817420."}]}
CALLS_OUT = {
    "role": "assistant",
    "parts": [
        {"type": "reasoning", "content": "Look both up first."},
        {"type": "text", "content": " \n"},
        {"type": "tool_call", "id": "c1", "name": "get_order_details", "arguments": {"order_id": "#W2378156"}},
        {"type": "tool_call", "id": "c2", "name": "get_order_details", "arguments": {"order_id": "#W4817420"}},
    ],
    "finish_reason": "tool_call",
}
RESULTS = {
    "role": "tool",
    "parts": [
        {"type": "tool_call_response", "id": "c1", "response": '{"status": "pending"}'},
        {"type": "tool_call_response", "id": "c2", "response": '{"status": "pending"}'},
    ],
}
ANSWER = {
    "role": "assistant",
    "parts": [{"type": "text", "content": json.dumps({"thought": THOUGHT, "message": SAID})}],
    "finish_reason": "stop",
}


def _genai_spans() -> list[SpanRecord]:
    """An agent on the GenAI conventions (no step indices): the conversation is rebuilt from the prompts."""
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1"}
    return [
        _span(1, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "shop"}, parent=None),
        _span(
            2, {**chat, "gen_ai.input.messages": json.dumps([USER]), "gen_ai.output.messages": json.dumps([CALLS_OUT])}
        ),
        _span(
            3,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_order_details",
                "gen_ai.tool.call.id": "c1",
            },
        ),
        _span(
            4,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_order_details",
                "gen_ai.tool.call.id": "c2",
            },
        ),
        _span(
            5,
            {
                **chat,
                "gen_ai.input.messages": json.dumps([USER, CALLS_OUT, RESULTS]),
                "gen_ai.output.messages": json.dumps([ANSWER]),
            },
        ),
    ]


def test_genai_parts_from_spans_read_as_said() -> None:
    [run] = runs_from_records(_genai_spans())
    assistants = [s for s in run.steps if isinstance(s, AssistantMessage)]
    assert len(assistants) == 2  # the answer repeated in the second prompt is counted once
    calls, answer = assistants
    assert calls.content is None and calls.reasoning == "Look both up first."
    assert [(c.id, c.arguments) for c in calls.tool_calls] == [
        ("c1", {"order_id": "#W2378156"}),
        ("c2", {"order_id": "#W4817420"}),
    ]
    assert (answer.content, answer.reasoning) == (SAID, THOUGHT)
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool", "tool", "assistant"]


def test_our_own_step_spans_read_as_said() -> None:
    """Step spans of this package (``agent_eval.step.kind``) carry the model's answer as it came."""
    step = {"gen_ai.operation.name": "chat", "agent_eval.step.kind": "assistant"}
    spans = [
        _span(1, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "shop"}, parent=None),
        _span(
            2, {"agent_eval.step.kind": "user", "agent_eval.step.index": 0, "gen_ai.input.messages": json.dumps([USER])}
        ),
        _span(3, {**step, "agent_eval.step.index": 1, "gen_ai.output.messages": json.dumps([CALLS_OUT])}),
        _span(4, {**step, "agent_eval.step.index": 2, "gen_ai.output.messages": json.dumps([ANSWER])}),
    ]
    [run] = runs_from_records(spans)
    _, calls, answer = run.steps
    assert isinstance(calls, AssistantMessage) and isinstance(answer, AssistantMessage)
    assert calls.content is None and [c.id for c in calls.tool_calls] == ["c1", "c2"]
    assert calls.reasoning == "Look both up first."  # a GenAI reasoning part
    assert (answer.content, answer.reasoning) == (SAID, THOUGHT)  # reasoning the wrapped text held


def test_openinference_attributes_read_as_said() -> None:
    prefix = "llm.output_messages.0.message."
    spans = [
        _span(1, {"openinference.span.kind": "AGENT"}, parent=None),
        _span(
            2,
            {
                "openinference.span.kind": "LLM",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Cancel #W2378156 and #W4817420.",
                prefix + "role": "assistant",
                prefix + "content": "",
                prefix + "tool_calls.0.tool_call.id": "c1",
                prefix + "tool_calls.0.tool_call.function.name": "cancel_pending_order",
                prefix + "tool_calls.0.tool_call.function.arguments": '{"order_id": "#W2378156"}',
                prefix + "tool_calls.1.tool_call.id": "c2",
                prefix + "tool_calls.1.tool_call.function.name": "cancel_pending_order",
                prefix + "tool_calls.1.tool_call.function.arguments": '{"order_id": "#W4817420"}',
            },
        ),
        _span(
            3,
            {
                "openinference.span.kind": "LLM",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": json.dumps({"response": SAID}),
            },
        ),
    ]
    [run] = runs_from_records(spans)
    assistants = [s for s in run.steps if isinstance(s, AssistantMessage)]
    assert assistants[0].content is None and [c.id for c in assistants[0].tool_calls] == ["c1", "c2"]
    assert assistants[-1].content == SAID


def test_imported_spans_carry_the_text_said() -> None:
    """A recorded run with wrapped text imports as spans of the text said, and reads back the same."""
    run = runs_from_data({"messages": CONVERSATION}, "run.json")
    [recorded] = list(run)
    assert isinstance(recorded, AgentRun)
    [back] = runs_from_spans(RunSpanWriter().spans(recorded))
    said = [(s.content, s.reasoning, s.tool_calls) for s in recorded.steps if isinstance(s, AssistantMessage)]
    assert said == [(s.content, s.reasoning, s.tool_calls) for s in back.steps if isinstance(s, AssistantMessage)]
    assert [r for _, r, _ in said] == [
        "Both orders first: their status decides whether they can be cancelled.",
        "Both are pending.",
        None,
        THOUGHT,
    ]


def test_reasoning_is_written_as_a_genai_reasoning_part() -> None:
    """The conventions' ReasoningPart (gen-ai-output-messages.json: ``type`` "reasoning", ``content`` text),
    ahead of the text; content like the text, so without content capture there is none."""
    step = AssistantMessage(index=1, content=SAID, reasoning=THOUGHT, finish_reason="stop")
    run = AgentRun(steps=(UserMessage(index=0, content="Cancel #W2378156."), step))
    chat = RunSpanWriter().spans(run)[2]
    [out] = json.loads(str((chat.attributes or {})["gen_ai.output.messages"]))
    assert out["parts"] == [{"type": "reasoning", "content": THOUGHT}, {"type": "text", "content": SAID}]
    [back] = runs_from_spans([chat])
    assert [(s.content, s.reasoning) for s in back.steps] == [(SAID, THOUGHT)]
    # a step without reasoning writes no reasoning part; with content capture off, no reasoning at all
    plain = RunSpanWriter().spans(replace(run, steps=(run.steps[0], replace(step, reasoning=None))))[2]
    assert [p["type"] for p in json.loads(str((plain.attributes or {})["gen_ai.output.messages"]))[0]["parts"]] == [
        "text"
    ]
    dark = RunSpanWriter(content=ContentPolicy(capture=False)).spans(run)
    assert all(THOUGHT not in str(v) for span in dark for v in (span.attributes or {}).values())


# --- the in-loop guard reads a proposed step as the history's ----------------------------------------------


class _Recording(Engine):
    """No evaluators: records the steps it is asked about."""

    def __init__(self) -> None:
        super().__init__(evaluators=[])
        self.proposed: list[Step] = []

    def check(self, history: AgentRun, proposed: Step) -> list[Finding]:
        self.proposed.append(proposed)
        return super().check(history, proposed)


@pytest.mark.parametrize(
    ("proposed", "said", "reasoning"),
    [
        ({"content": json.dumps({"message": SAID})}, SAID, None),
        ({"content": json.dumps({"thought": THOUGHT, "message": SAID})}, SAID, THOUGHT),
        ({"content": SAID, "reasoning_content": THOUGHT}, SAID, THOUGHT),
        ({"role": "assistant", "content": SAID, "thinking": THOUGHT}, SAID, THOUGHT),
        ({"content": [{"type": "thinking", "thinking": THOUGHT}, {"type": "text", "text": SAID}]}, SAID, THOUGHT),
        ({"content": json.dumps({"order_id": "#W1"})}, json.dumps({"order_id": "#W1"}), None),
    ],
    ids=["wrapped", "wrapped-with-thought", "reasoning_content", "thinking", "thinking-block", "other-json"],
)
def test_the_guard_reads_a_proposed_step_as_said(proposed: dict[str, Any], said: str, reasoning: str | None) -> None:
    engine = _Recording()
    history = [{"role": "user", "content": "Cancel #W2378156."}]
    assert Guard(engine=engine).check(history, proposed).action == "allow"
    [step] = engine.proposed
    assert isinstance(step, AssistantMessage)
    assert (step.index, step.content, step.reasoning) == (1, said, reasoning)
    # the same message in a history reads the same
    [as_history] = messages_to_steps([parse_openai_message({"role": "assistant", **proposed}, field="m")])[1]
    assert isinstance(as_history, AssistantMessage)
    assert (as_history.content, as_history.reasoning) == (said, reasoning)


def test_the_guard_reads_blank_text_beside_proposed_calls_as_nothing_said() -> None:
    engine = _Recording()
    call = _call("c1", "get_order_details", {"order_id": "#W2378156"})
    Guard(engine=engine).check(
        [{"role": "user", "content": "Where is #W2378156?"}], {"content": " ", "tool_calls": [call]}
    )
    [step] = engine.proposed
    assert isinstance(step, AssistantMessage)
    assert step.content is None and [c.id for c in step.tool_calls] == ["c1"]


# --- arbitrary text never breaks the reader --------------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "null"] + (["list", "dict", "dict", "wrapper"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return "".join(rng.choice("ab {}[]\"':,\\\n\t\u00e9\u2019") for _ in range(rng.randint(0, 8)))
    if kind == "int":
        return rng.randint(-(10**20), 10**20)
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-300, 3.14])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["message", "response", "content", "text", "thought", "reasoning", "role", "type", "x", ""]
    if kind == "wrapper":
        return {rng.choice(keys[:4]): _random_json(rng, depth + 1), rng.choice(keys[4:]): _random_json(rng, depth + 1)}
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _texts(rng: random.Random) -> str:
    value = json.dumps(_random_json(rng), ensure_ascii=rng.random() < 0.5)
    cut = rng.random()
    if cut < 0.2:
        return value[: rng.randint(0, len(value))]  # truncated JSON
    if cut < 0.3:
        return "{" * rng.randint(1, 5000) + "}" * rng.randint(0, 5000)  # past the decoder's nesting limit
    if cut < 0.4:
        return rng.choice([" ", "\n", ""]) + value + rng.choice([" ", "\n", ""])
    return value


def test_arbitrary_json_text_never_breaks_the_reader() -> None:
    """A seeded fuzz (hypothesis is not installed here): any text reads without raising, as a string or
    ``None``; text that is kept is kept verbatim; reading is the same from a file and from spans."""
    rng = random.Random(20261126)
    for _ in range(3000):
        content = _texts(rng)
        for calls in (False, True):
            text, reasoning = assistant_text(content, tool_calls=calls)
            assert text is None or isinstance(text, str)
            assert reasoning is None or (isinstance(reasoning, str) and reasoning.strip())
            if reasoning is None and text is not None:
                assert text == content or json.loads(content.strip())  # kept, or unwrapped from a JSON object
            if text is None:
                assert calls
        message = {"role": "assistant", "content": content, "tool_calls": [_call("c1", "f", {})]}
        [step] = messages_to_steps([parse_openai_message(message, field="m", strict=False)])[1]
        genai = {
            "role": "assistant",
            "parts": [{"type": "text", "content": content}, {"type": "tool_call", "id": "c1", "name": "f"}],
        }
        [from_parts] = parse_genai_messages(genai, field="m")
        assert isinstance(step, AssistantMessage)
        assert step.content == from_parts.content
        assert step.reasoning == from_parts.reasoning


def test_a_user_message_holding_json_is_untouched() -> None:
    content = json.dumps({"message": SAID})
    [step] = messages_to_steps([parse_openai_message({"role": "user", "content": content}, field="m")])[1]
    assert isinstance(step, UserMessage) and step.content == content


def test_json_nested_past_the_decoders_limit_is_kept_as_written() -> None:
    for key in ("message", "x"):
        content = f'{{"{key}": ' * 100_000 + '"hi"' + "}" * 100_000
        assert assistant_text(content) == (content, None)
