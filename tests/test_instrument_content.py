"""Content on live spans: redaction of caller messages, exception texts, the reference; the instrumentation
never raising into the application."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_agent_eval import semconv as sc
from otel_agent_eval.instrument import ContentPolicy, RunSpanWriter, agent_run, tool
from otel_agent_eval.model import (
    AgentRun,
    AssistantMessage,
    ExpectedAction,
    Reference,
    ToolCall,
    ToolDefinition,
    UserMessage,
)

Pipeline = tuple[TracerProvider, InMemorySpanExporter]

SECRET = "ann@example.com"
REDACTED = ContentPolicy(capture=True, redact=lambda s: "<r>")
EMAILS = ContentPolicy(capture=True, redact=lambda s: re.sub(r"[\w.]+@[\w.]+\w", "<email>", s))
OFF = ContentPolicy(capture=False)


def _fail(_: str) -> str:
    raise RuntimeError(f"redactor down while reading {SECRET}")


FAILING = ContentPolicy(capture=True, redact=_fail)

LOOKUP = {
    "type": "function",
    "function": {"name": "lookup", "description": "Look up an account.", "parameters": {"type": "object"}},
}


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def everything(spans: tuple[ReadableSpan, ...]) -> str:
    """Every attribute, status and event text of the spans, to search for leaked content."""
    out = []
    for s in spans:
        out += [str(v) for v in (s.attributes or {}).values()]
        out.append(str(s.status.description))
        for e in s.events:
            out += [str(v) for v in (e.attributes or {}).values()]
    return " ".join(out)


# --- 6a: caller-given input messages ------------------------------------------------------------------------

INPUT_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
    {"role": "user", "parts": [{"type": "text", "content": f"I am {SECRET}"}]},
    {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"email": SECRET, "n": 2}}],
    },
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"found": SECRET}}]},
    # OpenAI-style messages, as many callers pass them
    {"role": "user", "content": f"mail {SECRET}"},
    {"role": "user", "content": [{"type": "text", "text": f"also {SECRET}"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"e": SECRET})}}
        ],
    },
    {"role": "tool", "tool_call_id": "c2", "name": "lookup", "content": f"{SECRET} found"},
]

INPUT_REDACTED = [
    {"role": "system", "parts": [{"type": "text", "content": "<r>"}]},
    {"role": "user", "parts": [{"type": "text", "content": "<r>"}]},
    {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"email": "<r>", "n": 2}}],
    },
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"found": "<r>"}}]},
    {"role": "user", "content": "<r>"},
    {"role": "user", "content": [{"type": "text", "text": "<r>"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": "<r>"}}],
    },
    {"role": "tool", "tool_call_id": "c2", "name": "lookup", "content": "<r>"},
]  # fmt: skip


def test_input_messages_are_redacted_in_content_fields_only(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    before = json.dumps(INPUT_MESSAGES)
    with agent_run("a", tracer_provider=provider, content=REDACTED) as run, run.chat(input_messages=INPUT_MESSAGES):
        pass
    chat = exporter.get_finished_spans()[0]
    assert json.loads(attrs_of(chat)[sc.GEN_AI_INPUT_MESSAGES]) == INPUT_REDACTED
    assert json.dumps(INPUT_MESSAGES) == before  # the caller's messages are not modified


def test_input_messages_verbatim_without_a_redactor(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with (
        agent_run("a", tracer_provider=provider, content=ContentPolicy()) as run,
        run.chat(input_messages=INPUT_MESSAGES),
    ):
        pass
    assert json.loads(attrs_of(exporter.get_finished_spans()[0])[sc.GEN_AI_INPUT_MESSAGES]) == INPUT_MESSAGES


def test_no_input_messages_when_capture_is_off(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with (
        agent_run("a", tracer_provider=provider, content=OFF) as run,
        run.chat(model="m", input_messages=INPUT_MESSAGES),
    ):
        pass
    chat = attrs_of(exporter.get_finished_spans()[0])
    assert sc.GEN_AI_INPUT_MESSAGES not in chat
    assert chat[sc.GEN_AI_REQUEST_MODEL] == "m"
    assert SECRET not in everything(exporter.get_finished_spans())


# --- 6a': reasoning is content, wherever a message holds it ------------------------------------------------

THOUGHT = f"The account of {SECRET} is the one to look up."

REASONING_MESSAGES: list[dict[str, Any]] = [
    {"role": "assistant", "content": "ok", "reasoning_content": THOUGHT},  # DeepSeek, vLLM, LiteLLM
    {"role": "assistant", "content": "ok", "reasoning": THOUGHT},  # OpenRouter, τ²
    {"role": "assistant", "content": "ok", "thinking": THOUGHT},  # Ollama
    {  # Anthropic thinking blocks
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": THOUGHT, "signature": "sig"}, {"type": "text", "text": "ok"}],
    },
    {"role": "assistant", "parts": [{"type": "reasoning", "content": THOUGHT}, {"type": "text", "content": "ok"}]},
    {"role": "assistant", "content": "ok", "thinking_blocks": [{"type": "thinking", "thinking": THOUGHT}]},
    {
        "role": "assistant",
        "content": "ok",
        "reasoning_details": [
            {"type": "reasoning.summary", "summary": THOUGHT},
            {"type": "reasoning.text", "text": THOUGHT, "signature": "sig"},
        ],
    },
    {"role": "assistant", "content": "ok", "reasoning": [{"type": "text", "text": THOUGHT}]},
]

REASONING_REDACTED: list[dict[str, Any]] = [
    {"role": "assistant", "content": "<r>", "reasoning_content": "<r>"},
    {"role": "assistant", "content": "<r>", "reasoning": "<r>"},
    {"role": "assistant", "content": "<r>", "thinking": "<r>"},
    {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "<r>", "signature": "sig"}, {"type": "text", "text": "<r>"}],
    },
    {"role": "assistant", "parts": [{"type": "reasoning", "content": "<r>"}, {"type": "text", "content": "<r>"}]},
    {"role": "assistant", "content": "<r>", "thinking_blocks": [{"type": "thinking", "thinking": "<r>"}]},
    {
        "role": "assistant",
        "content": "<r>",
        "reasoning_details": [
            {"type": "reasoning.summary", "summary": "<r>"},
            {"type": "reasoning.text", "text": "<r>", "signature": "sig"},
        ],
    },
    {"role": "assistant", "content": "<r>", "reasoning": [{"type": "text", "text": "<r>"}]},
]


def test_reasoning_in_input_messages_goes_through_the_redactor(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return "<r>"

    policy = ContentPolicy(capture=True, redact=redact)
    for message, redacted in zip(REASONING_MESSAGES, REASONING_REDACTED, strict=True):
        seen.clear()
        exporter.clear()
        with agent_run("a", tracer_provider=provider, content=policy) as run, run.chat(input_messages=[message]):
            pass
        chat = exporter.get_finished_spans()[0]
        assert json.loads(attrs_of(chat)[sc.GEN_AI_INPUT_MESSAGES]) == [redacted]
        assert THOUGHT in seen  # the redactor saw the reasoning, as it sees the text
        assert SECRET not in everything(exporter.get_finished_spans())


def test_no_reasoning_in_input_messages_when_capture_is_off(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider, content=OFF) as run, run.chat(input_messages=REASONING_MESSAGES):
        pass
    assert sc.GEN_AI_INPUT_MESSAGES not in attrs_of(exporter.get_finished_spans()[0])
    assert SECRET not in everything(exporter.get_finished_spans())


def test_a_steps_reasoning_is_written_through_the_policy() -> None:
    """An assistant step's reasoning is a GenAI reasoning part of its output message, redacted like its text."""
    run = AgentRun(
        steps=(
            UserMessage(index=0, content="Look me up."),
            AssistantMessage(index=1, content=f"Found {SECRET}.", reasoning=THOUGHT),
        )
    )
    chat = attrs_of(RunSpanWriter(content=EMAILS).spans(run)[2])
    assert json.loads(chat[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "The account of <email> is the one to look up."},
                {"type": "text", "content": "Found <email>."},
            ],
            "finish_reason": "stop",
        }
    ]
    spans = RunSpanWriter(content=OFF).spans(run)
    assert sc.GEN_AI_OUTPUT_MESSAGES not in attrs_of(spans[2])
    assert "look up" not in everything(tuple(spans)) and SECRET not in everything(tuple(spans))


# --- 6b: exceptions -----------------------------------------------------------------------------------------


@tool
def failing_lookup(email: str) -> None:
    raise LookupError(f"no account for {email}")


def run_failing_tool(provider: TracerProvider, policy: ContentPolicy) -> LookupError:
    """A tool raises inside a model call's block, inside the run: the error crosses all three spans."""
    with (
        pytest.raises(LookupError) as info,
        agent_run("a", tracer_provider=provider, content=policy) as run,
        run.chat(model="m"),
    ):
        failing_lookup(SECRET)
    return info.value


@pytest.mark.parametrize(
    ("policy", "message"),
    [(EMAILS, "no account for <email>"), (OFF, None)],
    ids=["redacted", "capture-off"],
)
def test_exceptions_recorded_through_the_policy(
    memory_spans: Pipeline, policy: ContentPolicy, message: str | None
) -> None:
    provider, exporter = memory_spans
    run_failing_tool(provider, policy)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["execute_tool failing_lookup", "chat m", "invoke_agent a"]
    expected_event = {"exception.type": "LookupError"} | ({"exception.message": message} if message else {})
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == message
        assert attrs_of(span)[sc.ERROR_TYPE] == "LookupError"
        assert [(e.name, dict(e.attributes or {})) for e in span.events] == [("exception", expected_event)]
    assert attrs_of(spans[0])[sc.AGENT_EVAL_TOOL_ERROR] == (message or "")
    assert SECRET not in everything(spans)


# --- 6c: the reference --------------------------------------------------------------------------------------

REFERENCE = Reference(reward=1.0, actions=(ExpectedAction("lookup", {"email": SECRET}),), outputs=(f"Hello {SECRET}",))


def test_reference_goes_through_the_policy() -> None:
    run = AgentRun(steps=(UserMessage(index=0, content="hi"),), reference=REFERENCE)
    root = attrs_of(RunSpanWriter(content=EMAILS).spans(run)[0])
    assert json.loads(root[sc.AGENT_EVAL_REFERENCE_ACTIONS]) == [{"name": "lookup", "arguments": {"email": "<email>"}}]
    assert root[sc.AGENT_EVAL_REFERENCE_OUTPUTS] == ("Hello <email>",)
    assert root[sc.AGENT_EVAL_REFERENCE_REWARD] == 1.0


def test_reference_without_content() -> None:
    run = AgentRun(steps=(UserMessage(index=0, content="hi"),), reference=REFERENCE)
    root = attrs_of(RunSpanWriter(content=OFF).spans(run)[0])
    assert json.loads(root[sc.AGENT_EVAL_REFERENCE_ACTIONS]) == [{"name": "lookup"}]
    assert sc.AGENT_EVAL_REFERENCE_OUTPUTS not in root
    assert root[sc.AGENT_EVAL_REFERENCE_REWARD] == 1.0


# --- 7: event_only ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["event_only", "EVENT_ONLY", "false", "no_content"])
def test_capture_off_values(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    assert ContentPolicy.from_env().capture is False


# --- 8: never raise into the application --------------------------------------------------------------------


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="otel_agent_eval"):
        yield caplog


def test_invalid_tool_definition_is_left_out(memory_spans: Pipeline, warnings_log: pytest.LogCaptureFixture) -> None:
    provider, exporter = memory_spans
    nameless = {"type": "function", "function": {"description": "no name"}}
    with agent_run("a", tool_definitions=[nameless, LOOKUP], tracer_provider=provider):
        pass
    root = attrs_of(exporter.get_finished_spans()[0])
    assert [t["name"] for t in json.loads(root[sc.GEN_AI_TOOL_DEFINITIONS])] == ["lookup"]
    assert "[0]: tool definition has no 'name'" in warnings_log.text


def test_chat_accepts_openai_tool_definitions(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run, run.chat(model="m", tool_definitions=[LOOKUP]):
        pass
    chat = attrs_of(exporter.get_finished_spans()[0])
    assert json.loads(chat[sc.GEN_AI_TOOL_DEFINITIONS]) == [
        {"type": "function", "name": "lookup", "description": "Look up an account.", "parameters": {"type": "object"}}
    ]
    assert ToolDefinition.from_openai(LOOKUP).name == "lookup"


@tool
def echo(mapping: object) -> str:
    return "ok"


def test_arguments_json_cannot_hold(memory_spans: Pipeline, warnings_log: pytest.LogCaptureFixture) -> None:
    provider, exporter = memory_spans
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with agent_run("a", tracer_provider=provider) as run:
        assert echo({(1, 2): SECRET}) == "ok"  # a key JSON cannot hold
        assert echo(circular) == "ok"
        with run.tool("raw", arguments={(3, 4): "x"}) as t:  # type: ignore[dict-item]
            t.set_result(circular)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["execute_tool echo", "execute_tool echo", "execute_tool raw", "invoke_agent a"]
    for span in spans[:3]:  # recorded without content, rather than not at all
        a = attrs_of(span)
        assert sc.GEN_AI_TOOL_CALL_ARGUMENTS not in a and a[sc.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert attrs_of(spans[0])[sc.GEN_AI_TOOL_CALL_RESULT] == "ok"
    assert sc.GEN_AI_TOOL_CALL_RESULT not in attrs_of(spans[2])
    assert "could not record a tool call: TypeError raised" in warnings_log.text
    assert "could not record a tool result: ValueError raised" in warnings_log.text
    assert SECRET not in warnings_log.text


def test_failing_redactor_never_breaks_the_agent(
    memory_spans: Pipeline, warnings_log: pytest.LogCaptureFixture
) -> None:
    provider, exporter = memory_spans
    with agent_run("a", system_instructions=f"Write to {SECRET}", tracer_provider=provider, content=FAILING) as run:
        run.user_message(f"I am {SECRET}")
        with run.chat(model="m", input_messages=[{"role": "user", "content": SECRET}]) as call:
            call.set_response(content=f"Hi {SECRET}", tool_calls=[ToolCall("c1", "echo", {"mapping": SECRET})])
        assert run.execute(call.tool_calls[0], echo) == "ok"
        with run.tool("check") as t:
            t.set_error(f"no {SECRET}")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "user_message",
        "chat m",
        "execute_tool echo",
        "execute_tool check",
        "invoke_agent a",
    ]
    assert attrs_of(spans[2])[sc.GEN_AI_TOOL_CALL_ID] == "c1"  # structure is kept
    assert spans[3].status.status_code is StatusCode.ERROR and spans[3].status.description is None
    assert SECRET not in everything(spans)
    assert "could not record" in warnings_log.text and SECRET not in warnings_log.text


@pytest.mark.parametrize("where", ["tool", "chat", "run"])
def test_failing_redactor_does_not_replace_the_application_exception(
    memory_spans: Pipeline, warnings_log: pytest.LogCaptureFixture, where: str
) -> None:
    provider, exporter = memory_spans
    error = KeyError(f"order of {SECRET}")
    with pytest.raises(KeyError) as info, agent_run("a", tracer_provider=provider, content=FAILING) as run:
        if where == "tool":
            with run.tool("t"):
                raise error
        elif where == "chat":
            with run.chat(model="m"):
                raise error
        raise error
    assert info.value is error and error.__context__ is None and error.__cause__ is None
    for span in exporter.get_finished_spans():  # every span the error crossed: failed, type only
        assert span.status.status_code is StatusCode.ERROR and span.status.description is None
        assert attrs_of(span)[sc.ERROR_TYPE] == "KeyError"
        assert [dict(e.attributes or {}) for e in span.events] == [{"exception.type": "KeyError"}]
    assert SECRET not in warnings_log.text
