"""The manual instrumentation API: span layout, content capture, redaction, errors."""

from __future__ import annotations

import json
import re

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from otel_agent_eval import semconv as sc
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.instrument import ContentPolicy, agent_run, current_run, set_default_policy, tool
from otel_agent_eval.model import ToolCall, ToolDefinition

Pipeline = tuple[TracerProvider, InMemorySpanExporter]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up an account.",
            "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
        },
    }
]


@tool(name="lookup")
def lookup_account(email: str) -> dict[str, str]:
    return {"user_id": "ann_1", "email": email}


def record_conversation(provider: TracerProvider, content: ContentPolicy | None = None) -> None:
    with agent_run(
        "desk",
        conversation_id="conv-1",
        system_instructions="Verify identity first. Contact: ops@example.com",
        tool_definitions=TOOLS,
        provider="openai",
        tracer_provider=provider,
        content=content,
    ) as run:
        run.user_message("I am ann@example.com")
        with run.chat(model="gpt-4o", input_messages=[{"role": "user", "parts": []}]) as call:
            call.set_response(
                tool_calls=[ToolCall(id="c1", name="lookup", arguments={"email": "ann@example.com"})],
                finish_reason="tool_calls",  # OpenAI's spelling
            )
        run.execute(call.tool_calls[0], lookup_account)
        with run.chat(model="gpt-4o") as call:
            call.set_response(content="Found you, ann@example.com.", finish_reason="stop")


def test_span_names_kinds_and_parenting(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    record_conversation(provider)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "user_message",
        "chat gpt-4o",
        "execute_tool lookup",
        "chat gpt-4o",
        "invoke_agent desk",
    ]
    root = spans[-1]
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in spans[:-1])
    assert [s.kind for s in spans] == [
        SpanKind.INTERNAL,
        SpanKind.CLIENT,
        SpanKind.INTERNAL,
        SpanKind.CLIENT,
        SpanKind.INTERNAL,
    ]
    assert root.attributes is not None
    assert root.attributes[sc.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert root.attributes[sc.GEN_AI_AGENT_NAME] == "desk"
    assert root.attributes[sc.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert root.attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert json.loads(str(root.attributes[sc.GEN_AI_TOOL_DEFINITIONS]))[0]["name"] == "lookup"
    chat = spans[1].attributes
    assert chat is not None and chat[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o" and chat[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert chat[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)  # the provider's own value
    assert json.loads(str(chat[sc.GEN_AI_OUTPUT_MESSAGES])) == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"email": "ann@example.com"}}],
            "finish_reason": "tool_call",
        }
    ]
    tool_span = spans[2].attributes
    assert tool_span is not None
    assert tool_span[sc.GEN_AI_TOOL_CALL_ID] == "c1"
    assert json.loads(str(tool_span[sc.GEN_AI_TOOL_CALL_RESULT])) == {"user_id": "ann_1", "email": "ann@example.com"}
    assert [s.attributes[sc.AGENT_EVAL_STEP_INDEX] for s in spans[:-1]] == [0, 1, 2, 3]  # type: ignore[index]


def test_read_back_as_steps(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    record_conversation(provider)
    [run] = runs_from_spans(exporter.get_finished_spans())
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]
    assert run.tool_definitions == (ToolDefinition.from_openai(TOOLS[0]),)
    assert run.system_instructions == "Verify identity first. Contact: ops@example.com"


def test_content_capture_off_by_environment(memory_spans: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    provider, exporter = memory_spans
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false")
    set_default_policy(None)
    try:
        record_conversation(provider)
    finally:
        set_default_policy(None)
    text = " ".join(str(v) for s in exporter.get_finished_spans() for v in (s.attributes or {}).values())
    assert "ann@example.com" not in text and "Verify identity" not in text and "Found you" not in text
    spans = exporter.get_finished_spans()
    assert spans[2].attributes is not None and spans[2].attributes[sc.GEN_AI_TOOL_NAME] == "lookup"
    assert spans[2].attributes[sc.GEN_AI_TOOL_CALL_ID] == "c1"  # structure is kept


@pytest.mark.parametrize("value", ["true", "SPAN_ONLY", "span_and_event", ""])
def test_content_capture_on_values(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    assert ContentPolicy.from_env().capture is True


def test_unknown_capture_value_keeps_default_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe")
    assert ContentPolicy.from_env().capture is True
    assert "maybe" in caplog.text


def test_redaction_hook_applies_everywhere(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    redact = ContentPolicy(capture=True, redact=lambda s: re.sub(r"[\w.]+@[\w.]+\w", "<email>", s))
    record_conversation(provider, content=redact)
    text = " ".join(str(v) for s in exporter.get_finished_spans() for v in (s.attributes or {}).values())
    assert "@example.com" not in text
    assert text.count("<email>") >= 5  # user text, system instructions, arguments (x2), result, answer


def test_tool_decorator_is_a_plain_call_outside_a_run(memory_spans: Pipeline) -> None:
    _, exporter = memory_spans
    assert current_run() is None
    assert lookup_account("x@y.z") == {"user_id": "ann_1", "email": "x@y.z"}
    assert exporter.get_finished_spans() == ()


def test_tool_exception_is_recorded_and_propagates(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans

    @tool
    def cancel(order_id: str) -> None:
        raise RuntimeError("order already delivered")

    with pytest.raises(RuntimeError), agent_run("a", tracer_provider=provider):
        cancel(order_id="#1")
    tool_span = exporter.get_finished_spans()[0]
    assert tool_span.name == "execute_tool cancel"
    assert tool_span.status.status_code is StatusCode.ERROR
    assert tool_span.attributes is not None
    assert tool_span.attributes["error.type"] == "RuntimeError"
    assert tool_span.attributes[sc.AGENT_EVAL_TOOL_ERROR] == "order already delivered"
    assert json.loads(str(tool_span.attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS])) == {"order_id": "#1"}
    assert [e.name for e in tool_span.events] == ["exception"]


def test_tool_error_returned_without_raising(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run, run.tool("cancel", call_id="c9", arguments={"id": 1}) as t:
        t.set_error("Error: order is delivered")
    [back] = runs_from_spans(exporter.get_finished_spans())
    step = back.steps[0]
    assert step.kind == "tool" and step.error == "Error: order is delivered" and step.call_id == "c9"  # type: ignore[union-attr]


def test_unserialisable_results_never_break_the_agent(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans

    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    @tool
    def odd() -> object:
        return {"thing": Opaque()}

    with agent_run("a", tracer_provider=provider):
        assert isinstance(odd(), dict)
    attrs = exporter.get_finished_spans()[0].attributes
    assert attrs is not None and "Opaque" in str(attrs[sc.GEN_AI_TOOL_CALL_RESULT])


def test_model_call_exception_marks_span(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with pytest.raises(TimeoutError), agent_run("a", tracer_provider=provider) as run, run.chat(model="m"):
        raise TimeoutError("model timed out")
    chat = exporter.get_finished_spans()[0]
    assert chat.status.status_code is StatusCode.ERROR and chat.events[0].name == "exception"


def test_invalid_arguments_kept_as_text(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run, run.chat(model="m") as call:
        call.set_response(tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1'}}])
    [back] = runs_from_spans(exporter.get_finished_spans())
    [bad] = back.steps[0].tool_calls  # type: ignore[union-attr]
    assert bad.arguments is None and bad.raw_arguments == '{"a": 1'
    assert exporter.get_finished_spans()[0].attributes[sc.AGENT_EVAL_ARGUMENTS_INVALID] is True  # type: ignore[index]
