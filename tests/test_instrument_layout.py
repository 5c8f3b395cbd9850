"""Span layout details, live and imported: finish reasons, ids, conversation ids, tool definitions, the scope of
imported input messages, user-side tool calls in recorded runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_agent_eval import semconv as sc
from otel_agent_eval.instrument import RunSpanWriter, agent_run
from otel_agent_eval.model import (
    AgentRun,
    AssistantMessage,
    ToolCall,
    ToolDefinition,
    ToolExecution,
    UserMessage,
)

Pipeline = tuple[TracerProvider, InMemorySpanExporter]


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --- 27: finish reasons --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "calls", "in_message", "attribute"),
    [
        ("tool_calls", True, "tool_call", ("tool_calls",)),
        ("stop", False, "stop", ("stop",)),
        ("length", False, "length", ("length",)),
        ("content_filter", False, "content_filter", ("content_filter",)),
        ("error", False, "error", ("error",)),
        ("end_turn", False, "stop", ("end_turn",)),  # Anthropic
        ("max_tokens", False, "length", ("max_tokens",)),
        ("MAX_TOKENS", False, "length", ("MAX_TOKENS",)),  # Gemini
        ("something_new", False, "something_new", ("something_new",)),  # unknown: kept, not invented
        (None, True, "tool_call", None),  # none given: inferred in the message only
        (None, False, "stop", None),
    ],
)
def test_finish_reason(
    memory_spans: Pipeline, raw: str | None, calls: bool, in_message: str, attribute: tuple[str, ...] | None
) -> None:
    provider, exporter = memory_spans
    tool_calls = [ToolCall("c1", "f", {})] if calls else []
    with agent_run("a", tracer_provider=provider) as run, run.chat(model="m") as call:
        call.set_response(content=None if calls else "ok", tool_calls=tool_calls, finish_reason=raw)
    chat = attrs_of(exporter.get_finished_spans()[0])
    assert json.loads(chat[sc.GEN_AI_OUTPUT_MESSAGES])[0]["finish_reason"] == in_message
    assert chat.get(sc.GEN_AI_RESPONSE_FINISH_REASONS) == attribute


# --- 28: unknown ids are left out ----------------------------------------------------------------------------

NO_IDS = AgentRun(
    steps=(
        UserMessage(index=0, content="go"),
        AssistantMessage(index=1, tool_calls=(ToolCall(id="", name="f", arguments={"x": 1}),)),
        ToolExecution(index=2, name="f", call_id=None, arguments={"x": 1}, result="ok"),
        AssistantMessage(index=3, content="done"),
    )
)


def test_unknown_ids_are_left_out_of_parts() -> None:
    _, _, chat1, tool_span, chat2 = RunSpanWriter().spans(NO_IDS)
    assert json.loads(attrs_of(chat1)[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "tool_call", "name": "f", "arguments": {"x": 1}}
    ]
    assert json.loads(attrs_of(chat2)[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "tool", "parts": [{"type": "tool_call_response", "response": "ok"}]}
    ]
    assert sc.GEN_AI_TOOL_CALL_ID not in attrs_of(tool_span)


def test_unknown_ids_are_left_out_live(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run, run.chat(model="m") as call:
        call.set_response(tool_calls=[{"name": "f", "arguments": "{}"}])
    parts = json.loads(attrs_of(exporter.get_finished_spans()[0])[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"]
    assert parts == [{"type": "tool_call", "name": "f", "arguments": {}}]


# --- 29: conversation id, errors on chat spans, tool definitions --------------------------------------------


def test_conversation_id_on_model_and_tool_spans(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", conversation_id="conv-7", tracer_provider=provider) as run:
        run.user_message("hi")
        with run.chat(model="m") as call:
            call.set_response(content="hello")
        with run.tool("t", call_id="c1") as t:
            t.set_result("ok")
    user, chat, tool_span, root = exporter.get_finished_spans()
    assert [attrs_of(s).get(sc.GEN_AI_CONVERSATION_ID) for s in (user, chat, tool_span, root)] == [
        None,
        "conv-7",
        "conv-7",
        "conv-7",
    ]


def test_no_conversation_id_on_steps_of_a_run_without_one(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run:
        with run.chat(model="m") as call:
            call.set_response(content="hello")
        with run.tool("t") as t:
            t.set_result("ok")
    assert all(sc.GEN_AI_CONVERSATION_ID not in attrs_of(s) for s in exporter.get_finished_spans())


def test_conversation_id_on_imported_steps() -> None:
    run = AgentRun(
        steps=(
            UserMessage(index=0, content="go"),
            AssistantMessage(index=1, tool_calls=(ToolCall(id="c1", name="f", arguments={}),)),
            ToolExecution(index=2, name="f", call_id="c1", arguments={}, result="ok"),
        ),
        conversation_id="conv-9",
    )
    _, user, chat, tool_span = RunSpanWriter().spans(run)
    assert sc.GEN_AI_CONVERSATION_ID not in attrs_of(user)
    assert attrs_of(chat)[sc.GEN_AI_CONVERSATION_ID] == "conv-9"
    assert attrs_of(tool_span)[sc.GEN_AI_CONVERSATION_ID] == "conv-9"


def test_failed_model_call_has_an_error_type(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with pytest.raises(TimeoutError), agent_run("a", tracer_provider=provider) as run, run.chat(model="m"):
        raise TimeoutError("model timed out")
    chat = exporter.get_finished_spans()[0]
    assert chat.status.status_code is StatusCode.ERROR
    assert attrs_of(chat)[sc.ERROR_TYPE] == "TimeoutError"


def test_tool_definition_without_description_has_an_empty_one(memory_spans: Pipeline) -> None:
    # The conventions' gen-ai-tool-definitions.json requires type, name and description.
    provider, exporter = memory_spans
    tools: list[ToolDefinition | dict[str, Any]] = [
        ToolDefinition(name="ping"),
        {"type": "function", "function": {"name": "pong", "parameters": {}}},
    ]
    with agent_run("a", tool_definitions=tools, tracer_provider=provider):
        pass
    root = attrs_of(exporter.get_finished_spans()[0])
    assert json.loads(root[sc.GEN_AI_TOOL_DEFINITIONS]) == [
        {"type": "function", "name": "ping", "description": ""},
        {"type": "function", "name": "pong", "description": "", "parameters": {}},
    ]


# --- 30: imported input messages are the new ones only ------------------------------------------------------


def test_imported_chat_spans_mark_their_input_scope() -> None:
    _, user, chat1, tool_span, chat2 = RunSpanWriter().spans(NO_IDS)
    assert attrs_of(chat1)[sc.AGENT_EVAL_INPUT_MESSAGES_SCOPE] == "new"
    assert attrs_of(chat2)[sc.AGENT_EVAL_INPUT_MESSAGES_SCOPE] == "new"
    assert json.loads(attrs_of(chat1)[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "go"}]}
    ]
    assert sc.AGENT_EVAL_INPUT_MESSAGES_SCOPE not in attrs_of(user) | attrs_of(tool_span)


def test_live_chat_spans_carry_no_scope(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run, run.chat(model="m", input_messages=[]):
        pass
    assert sc.AGENT_EVAL_INPUT_MESSAGES_SCOPE not in attrs_of(exporter.get_finished_spans()[0])


# --- 1: user-side tool calls in recorded runs ---------------------------------------------------------------


def test_imported_user_tool_calls() -> None:
    run = AgentRun(
        steps=(
            UserMessage(
                index=0,
                content="Done, I restarted it.",
                tool_calls=(ToolCall(id="u1", name="reboot_device", arguments={}),),
            ),
            ToolExecution(
                index=1, name="reboot_device", call_id="u1", arguments={}, result="rebooted", requested_by="user"
            ),
            AssistantMessage(index=2, content="Thanks."),
        )
    )
    _, user, tool_span, chat = RunSpanWriter().spans(run)
    user_message = {
        "role": "user",
        "parts": [
            {"type": "text", "content": "Done, I restarted it."},
            {"type": "tool_call", "id": "u1", "name": "reboot_device", "arguments": {}},
        ],
    }
    assert json.loads(attrs_of(user)[sc.GEN_AI_INPUT_MESSAGES]) == [user_message]
    assert attrs_of(tool_span)[sc.AGENT_EVAL_TOOL_REQUESTED_BY] == "user"
    assert json.loads(attrs_of(chat)[sc.GEN_AI_INPUT_MESSAGES]) == [
        user_message,
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "u1", "response": "rebooted"}]},
    ]


def test_assistant_tool_executions_carry_no_requester() -> None:
    _, _, _, tool_span, _ = RunSpanWriter().spans(NO_IDS)
    assert sc.AGENT_EVAL_TOOL_REQUESTED_BY not in attrs_of(tool_span)
