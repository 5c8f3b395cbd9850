"""Spans of every attribute dialect, back into agent runs.

One weather-agent conversation is written the way each instrumentation really writes it:

* otel-agent-eval's own spans (through :mod:`otel_agent_eval.instrument`);
* the current OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name`` + JSON messages);
* the older GenAI names (``gen_ai.system``, indexed ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``);
* OpenInference (``openinference.span.kind``, flattened ``llm.input_messages.N.message.*``);
* OpenLLMetry / Traceloop (``traceloop.span.kind`` plus the indexed ``gen_ai.prompt.N.*`` on LLM spans).

The conversation: the user asks for the weather in Paris; the model calls ``get_weather``; the tool runs; the
model answers; the user asks about Rome; the model calls the tool again; the tool fails (span status ERROR); the
model apologises. Every model call's prompt repeats the whole history, as chat APIs require. Each fixture is
read from :class:`SpanRecord` objects and again through real OTLP protobuf (``ExportTraceServiceRequest``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_agent_eval.ingest.span_record import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    SpanRecord,
    key_value,
    records_from_request,
)
from otel_agent_eval.ingest.spans import runs_from_records, runs_from_request, runs_from_spans
from otel_agent_eval.instrument import agent_run
from otel_agent_eval.model import AgentRun, AssistantMessage, Step, ToolCall, ToolDefinition, ToolExecution, UserMessage

# --- the conversation, as OpenAI chat-completions messages ----------------------------------------------------

SYSTEM = "You are a weather assistant. Always use get_weather; never guess."
U1 = "What's the weather in Paris?"
U2 = "And in Rome?"
CALL_1 = "call_VSPygqKTWdrhaFErNvMV18Yl"
CALL_2 = "call_Jja7J89XsjrOLA5rMEOWSL3d"
RESULT_1 = "Rainy, 12°C"
ERROR_2 = "weather service timed out after 10s"  # the exception message (span status description)
FED_BACK_2 = "Error: weather service timed out after 10s"  # what the agent fed back to the model
A1 = "It is rainy in Paris, 12°C."
A2 = "Sorry, I could not get the weather for Rome right now."
MODEL = "gpt-4o"
RESPONSE_MODEL = "gpt-4o-2024-08-06"

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}
WEATHER_TOOL: dict[str, Any] = {  # an OpenAI chat-completions tool, as sent in the request
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather for a city.", "parameters": WEATHER_PARAMETERS},
}
EXPECTED_TOOLS = (ToolDefinition("get_weather", "Current weather for a city.", WEATHER_PARAMETERS),)


def _call(call_id: str, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


M_SYSTEM = {"role": "system", "content": SYSTEM}
M_U1 = {"role": "user", "content": U1}
M_CALL_1 = {"role": "assistant", "content": None, "tool_calls": [_call(CALL_1, "get_weather", {"city": "Paris"})]}
M_RESULT_1 = {"role": "tool", "tool_call_id": CALL_1, "content": RESULT_1}
M_A1 = {"role": "assistant", "content": A1}
M_U2 = {"role": "user", "content": U2}
M_CALL_2 = {"role": "assistant", "content": None, "tool_calls": [_call(CALL_2, "get_weather", {"city": "Rome"})]}
M_RESULT_2 = {"role": "tool", "tool_call_id": CALL_2, "content": FED_BACK_2}
M_A2 = {"role": "assistant", "content": A2}

# The four model calls: (prompt, answer, OpenAI finish_reason). Every prompt repeats the whole history.
MODEL_CALLS: list[tuple[list[dict[str, Any]], dict[str, Any], str]] = [
    ([M_SYSTEM, M_U1], M_CALL_1, "tool_calls"),
    ([M_SYSTEM, M_U1, M_CALL_1, M_RESULT_1], M_A1, "stop"),
    ([M_SYSTEM, M_U1, M_CALL_1, M_RESULT_1, M_A1, M_U2], M_CALL_2, "tool_calls"),
    ([M_SYSTEM, M_U1, M_CALL_1, M_RESULT_1, M_A1, M_U2, M_CALL_2, M_RESULT_2], M_A2, "stop"),
]
USAGE = [(52, 17), (97, 12), (121, 18), (160, 15)]  # (input tokens, output tokens) per model call

# Timeline (ms from T0): root 0-100; model calls m1..m4; tool executions t1 (ok) and t2 (fails).
TIMES = {"m1": (10, 20), "t1": (21, 25), "m2": (26, 35), "m3": (40, 50), "t2": (51, 55), "m4": (56, 65)}
IDS = {"root": 1, "m1": 3, "t1": 4, "m2": 5, "m3": 6, "t2": 7, "m4": 8}  # span numbers shared by all fixtures

# The run every dialect must yield: kinds, contents, tool calls, tool executions matched to their calls.
EXPECTED_STEPS: list[tuple[Any, ...]] = [
    ("user", U1),
    ("assistant", None, ((CALL_1, "get_weather", {"city": "Paris"}),)),
    ("tool", "get_weather", CALL_1, {"city": "Paris"}, RESULT_1, None),
    ("assistant", A1, ()),
    ("user", U2),
    ("assistant", None, ((CALL_2, "get_weather", {"city": "Rome"}),)),
    ("tool", "get_weather", CALL_2, {"city": "Rome"}, FED_BACK_2, ERROR_2),
    ("assistant", A2, ()),
]
# The span each step was read from: a user message from the first prompt that carried it, an answer from its
# model call, a tool execution from its tool span.
EXPECTED_STEP_SPANS = ["m1", "m1", "t1", "m2", "m3", "m3", "t2", "m4"]

# --- span building ------------------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_750_000_000_000_000_000
MS = 1_000_000


def sid(n: int) -> str:
    return f"{n:016x}"


def span(
    n: int,
    name: str,
    start_ms: int,
    end_ms: int,
    attributes: Mapping[str, Any],
    *,
    parent: int | None = None,
    trace: str = TRACE,
    status: int = STATUS_UNSET,
    message: str | None = None,
) -> SpanRecord:
    return SpanRecord(
        trace_id=trace,
        span_id=sid(n),
        parent_span_id=sid(parent) if parent is not None else None,
        name=name,
        start_time_ns=T0 + start_ms * MS,
        end_time_ns=T0 + end_ms * MS,
        attributes=dict(attributes),
        status_code=status,
        status_message=message,
    )


def step_span(key: str, name: str, attributes: Mapping[str, Any], *, parent: int, **kw: Any) -> SpanRecord:
    start, end = TIMES[key]
    return span(IDS[key], name, start, end, attributes, parent=parent, **kw)


def to_request(records: Iterable[SpanRecord]) -> ExportTraceServiceRequest:
    """The records as an OTLP export request: protobuf spans with ``key_value`` attributes."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(key_value("service.name", "weather-bot"))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "test-fixture"
    codes = {STATUS_OK: ProtoStatus.STATUS_CODE_OK, STATUS_ERROR: ProtoStatus.STATUS_CODE_ERROR}
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
        proto.status.code = codes.get(r.status_code, ProtoStatus.STATUS_CODE_UNSET)
        if r.status_message:
            proto.status.message = r.status_message
        scope_spans.spans.append(proto)
    return request


def read(records: Sequence[SpanRecord], via: str) -> list[AgentRun]:
    if via == "otlp":
        return runs_from_request(ExportTraceServiceRequest.FromString(to_request(records).SerializeToString()))
    return runs_from_records(records)


VIA = pytest.mark.parametrize("via", ["records", "otlp"])

# --- reading runs back --------------------------------------------------------------------------------------


def describe(step: Step) -> tuple[Any, ...]:
    if isinstance(step, UserMessage):
        return ("user", step.content)
    if isinstance(step, AssistantMessage):
        return ("assistant", step.content, tuple((c.id, c.name, _args(c.arguments)) for c in step.tool_calls))
    return ("tool", step.name, step.call_id, _args(step.arguments), step.result, step.error)


def _args(arguments: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(arguments) if arguments is not None else None


def only_run(runs: list[AgentRun]) -> AgentRun:
    assert len(runs) == 1, [describe(s) for r in runs for s in r.steps]
    return runs[0]


def assert_weather_run(run: AgentRun, *, finish_reasons: Sequence[str | None], provider: str | None) -> None:
    assert [describe(s) for s in run.steps] == EXPECTED_STEPS
    assert [s.index for s in run.steps] == list(range(len(EXPECTED_STEPS)))
    assert [s.span_id for s in run.steps] == [sid(IDS[k]) for k in EXPECTED_STEP_SPANS]
    assert run.trace_id == TRACE
    # The system prompt is the run's instructions, never a step, however often the prompts repeat it.
    assert run.system_instructions == SYSTEM
    assert all(getattr(s, "content", None) != SYSTEM for s in run.steps)
    assert run.tool_definitions == EXPECTED_TOOLS
    answers = [s for s in run.steps if isinstance(s, AssistantMessage)]
    assert [(a.model, a.provider) for a in answers] == [(RESPONSE_MODEL, provider)] * 4
    assert [(a.input_tokens, a.output_tokens) for a in answers] == USAGE
    assert [a.finish_reason for a in answers] == list(finish_reasons)
    # Every tool execution is the execution of the call the model made just before it.
    for step in run.steps:
        if isinstance(step, ToolExecution):
            assert step.call_id is not None
            call = run.tool_call(step.call_id)
            assert call is not None and (call.name, call.arguments) == (step.name, step.arguments)
    tool_steps = [s for s in run.steps if isinstance(s, ToolExecution)]
    assert [(t.failed, t.start_time_ns) for t in tool_steps] == [
        (False, T0 + TIMES["t1"][0] * MS),
        (True, T0 + TIMES["t2"][0] * MS),
    ]


# --- (b) current GenAI semantic conventions ------------------------------------------------------------------


def genai_parts(message: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI message in the GenAI conventions' shape (semantic-conventions gen-ai-input-messages.json)."""
    if message["role"] == "tool":
        part = {"type": "tool_call_response", "id": message["tool_call_id"], "response": message["content"]}
        return {"role": "tool", "parts": [part]}
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        parts.append({"type": "text", "content": message["content"]})
    for c in message.get("tool_calls", ()):
        fn = c["function"]
        parts.append({"type": "tool_call", "id": c["id"], "name": fn["name"], "arguments": json.loads(fn["arguments"])})
    return {"role": message["role"], "parts": parts}


def genai_trace() -> list[SpanRecord]:
    # Mirrors the OpenTelemetry GenAI semantic conventions (open-telemetry/semantic-conventions docs/gen-ai/
    # gen-ai-spans.md, gen-ai-agent-spans.md, non-normative/examples-llm-calls.md): an `invoke_agent` span with
    # gen_ai.agent.name / gen_ai.conversation.id; `chat {model}` spans with gen_ai.input.messages /
    # gen_ai.output.messages (role + parts JSON), gen_ai.tool.definitions, gen_ai.usage.*; `execute_tool {name}`
    # spans with gen_ai.tool.name / gen_ai.tool.call.id / .arguments / .result, status ERROR + error.type on failure.
    root = IDS["root"]
    spans = [
        span(
            root,
            "invoke_agent weather-agent",
            0,
            100,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": "openai",
                "gen_ai.agent.name": "weather-agent",
                "gen_ai.agent.id": "asst_5j66UpCpwteGg4YSxUnt7lPY",
                "gen_ai.conversation.id": "conv_5j66UpCpwteGg4YSxUnt7lPY",
                "gen_ai.request.model": MODEL,
            },
        )
    ]
    for i, (prompt, answer, finish) in enumerate(MODEL_CALLS):
        out = {**genai_parts(answer), "finish_reason": "tool_call" if finish == "tool_calls" else finish}
        spans.append(
            step_span(
                f"m{i + 1}",
                f"chat {MODEL}",
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": MODEL,
                    "gen_ai.response.model": RESPONSE_MODEL,
                    "gen_ai.response.id": f"chatcmpl-9J3uIL87gldCFtiIbyaOvTeYBRA3{i}",
                    "gen_ai.response.finish_reasons": [finish],
                    "gen_ai.usage.input_tokens": USAGE[i][0],
                    "gen_ai.usage.output_tokens": USAGE[i][1],
                    "gen_ai.input.messages": json.dumps([genai_parts(m) for m in prompt]),
                    "gen_ai.output.messages": json.dumps([out]),
                    "gen_ai.tool.definitions": json.dumps(
                        [{"type": "function", **WEATHER_TOOL["function"]}]  # the conventions' flat form
                    ),
                },
                parent=root,
            )
        )
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather", "gen_ai.tool.type": "function"}
    spans.append(
        step_span(
            "t1",
            "execute_tool get_weather",
            {
                **tool,
                "gen_ai.tool.call.id": CALL_1,
                "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": RESULT_1,
            },
            parent=root,
        )
    )
    spans.append(
        step_span(
            "t2",
            "execute_tool get_weather",
            {
                **tool,
                "gen_ai.tool.call.id": CALL_2,
                "gen_ai.tool.call.arguments": '{"city": "Rome"}',
                "error.type": "TimeoutError",
            },
            parent=root,
            status=STATUS_ERROR,
            message=ERROR_2,
        )
    )
    return spans


@VIA
def test_genai_semconv_agent_trace(via: str) -> None:
    run = only_run(read(genai_trace(), via))
    assert_weather_run(run, finish_reasons=["tool_call", "stop", "tool_call", "stop"], provider="openai")
    assert run.agent_name == "weather-agent"
    assert run.conversation_id == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert run.root_span_id == sid(IDS["root"])
    assert (run.start_time_ns, run.end_time_ns) == (T0, T0 + 100 * MS)


@VIA
def test_genai_system_instructions_attribute_and_stateful_prompts(via: str) -> None:
    """Responses-API style: instructions in gen_ai.system_instructions, each prompt only carries the new items."""
    call_index = {sid(IDS[f"m{i + 1}"]): i for i in range(len(MODEL_CALLS))}
    spans = []
    for s in genai_trace():
        if s.span_id not in call_index:
            spans.append(s)
            continue
        index = call_index[s.span_id]
        prompt = MODEL_CALLS[index][0]
        previous = len(MODEL_CALLS[index - 1][0]) + 1 if index else 1  # the history the server already holds
        attributes = dict(s.attributes)
        attributes["gen_ai.input.messages"] = json.dumps([genai_parts(m) for m in prompt[previous:]])
        attributes["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": SYSTEM}])
        spans.append(replace(s, attributes=attributes))
    run = only_run(read(spans, via))
    assert_weather_run(run, finish_reasons=["tool_call", "stop", "tool_call", "stop"], provider="openai")


# --- (d) OpenInference ----------------------------------------------------------------------------------------


def oi_message(prefix: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """Flattened like openinference-instrumentation-openai's _get_attributes_from_message_param."""
    out: dict[str, Any] = {f"{prefix}.message.role": message["role"]}
    if message.get("tool_call_id"):
        out[f"{prefix}.message.tool_call_id"] = message["tool_call_id"]
    if message.get("content"):
        out[f"{prefix}.message.content"] = message["content"]
    for i, c in enumerate(message.get("tool_calls", ())):
        out[f"{prefix}.message.tool_calls.{i}.tool_call.id"] = c["id"]
        out[f"{prefix}.message.tool_calls.{i}.tool_call.function.name"] = c["function"]["name"]
        out[f"{prefix}.message.tool_calls.{i}.tool_call.function.arguments"] = c["function"]["arguments"]
    return out


SESSION = "sess-7f1c9b2e"


def openinference_trace(*, tool_call_id_key: str | None = None) -> list[SpanRecord]:
    # Mirrors OpenInference (Arize-ai/openinference): openinference-semantic-conventions SpanAttributes
    # (OPENINFERENCE_SPAN_KIND, LLM_INPUT_MESSAGES / LLM_OUTPUT_MESSAGES, LLM_TOOLS + ToolAttributes.TOOL_JSON_SCHEMA,
    # LLM_MODEL_NAME, LLM_SYSTEM, LLM_PROVIDER, LLM_TOKEN_COUNT_*, TOOL_NAME, TOOL_DESCRIPTION, TOOL_PARAMETERS,
    # INPUT_VALUE, OUTPUT_VALUE, SESSION_ID, AGENT_NAME), MessageAttributes (MESSAGE_ROLE, MESSAGE_CONTENT,
    # MESSAGE_TOOL_CALLS, MESSAGE_TOOL_CALL_ID) and ToolCallAttributes (TOOL_CALL_ID, TOOL_CALL_FUNCTION_NAME,
    # TOOL_CALL_FUNCTION_ARGUMENTS_JSON). LLM spans as openinference-instrumentation-openai writes a
    # "ChatCompletion" span; AGENT / TOOL spans as the OITracer @tracer.agent / @tracer.tool decorators write them
    # (no call id on TOOL spans; ERROR status with the exception message); session.id from using_session().
    root = IDS["root"]
    session = {"session.id": SESSION}
    spans = [
        span(
            root,
            "weather_agent",
            0,
            100,
            {
                **session,
                "openinference.span.kind": "AGENT",
                "agent.name": "weather-agent",
                "input.value": U1,
                "output.value": A2,
            },
        )
    ]
    for i, (prompt, answer, finish) in enumerate(MODEL_CALLS):
        attributes: dict[str, Any] = {
            **session,
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.provider": "openai",
            "llm.model_name": RESPONSE_MODEL,
            "llm.invocation_parameters": json.dumps({"model": MODEL, "tool_choice": "auto"}),
            "llm.tools.0.tool.json_schema": json.dumps(WEATHER_TOOL),
            "input.value": json.dumps({"messages": prompt, "model": MODEL, "tools": [WEATHER_TOOL]}),
            "input.mime_type": "application/json",
            "output.value": json.dumps({"choices": [{"message": answer, "finish_reason": finish}]}),
            "output.mime_type": "application/json",
            "llm.token_count.prompt": USAGE[i][0],
            "llm.token_count.completion": USAGE[i][1],
            "llm.token_count.total": sum(USAGE[i]),
        }
        for n, message in enumerate(prompt):
            attributes.update(oi_message(f"llm.input_messages.{n}", message))
        attributes.update(oi_message("llm.output_messages.0", answer))
        spans.append(step_span(f"m{i + 1}", "ChatCompletion", attributes, parent=root))
    tool = {
        **session,
        "openinference.span.kind": "TOOL",
        "tool.name": "get_weather",
        "tool.description": "Current weather for a city.",
        "tool.parameters": json.dumps(WEATHER_PARAMETERS),
        "input.mime_type": "application/json",
    }
    t1 = {**tool, "input.value": '{"city": "Paris"}', "output.value": RESULT_1}
    t2 = {**tool, "input.value": '{"city": "Rome"}'}
    if tool_call_id_key:
        t1[tool_call_id_key], t2[tool_call_id_key] = CALL_1, CALL_2
    spans.append(step_span("t1", "get_weather", t1, parent=root, status=STATUS_OK))
    spans.append(step_span("t2", "get_weather", t2, parent=root, status=STATUS_ERROR, message=ERROR_2))
    return spans


@VIA
def test_openinference_agent_trace(via: str) -> None:
    run = only_run(read(openinference_trace(), via))
    assert_weather_run(run, finish_reasons=[None] * 4, provider="openai")
    assert run.agent_name == "weather-agent"
    assert run.conversation_id == SESSION
    assert run.root_span_id == sid(IDS["root"])


@pytest.mark.parametrize("key", ["tool.id", "tool_call.id"])
def test_openinference_tool_span_call_id_wins_over_order(key: str) -> None:
    """`tool.id` (SpanAttributes.TOOL_ID: "the identifier for the result of the tool call") or `tool_call.id` on a
    TOOL span ties it to its call: two parallel calls of one tool that ran in the reverse order."""
    calls = [_call("call_a", "get_weather", {"city": "Paris"}), _call("call_b", "get_weather", {"city": "Rome"})]
    asked = {"role": "assistant", "content": None, "tool_calls": calls}
    prompt: list[dict[str, Any]] = [M_U1]
    results = [{"role": "tool", "tool_call_id": "call_a", "content": "Rainy"}]
    results.append({"role": "tool", "tool_call_id": "call_b", "content": "Sunny"})

    def llm(n: int, start: int, messages: list[dict[str, Any]], out: dict[str, Any]) -> SpanRecord:
        attributes: dict[str, Any] = {"openinference.span.kind": "LLM", "llm.model_name": RESPONSE_MODEL}
        for i, m in enumerate(messages):
            attributes.update(oi_message(f"llm.input_messages.{i}", m))
        attributes.update(oi_message("llm.output_messages.0", out))
        return span(n, "ChatCompletion", start, start + 5, attributes, parent=1)

    def tool(n: int, start: int, call_id: str, city: str, output: str) -> SpanRecord:
        attributes = {"openinference.span.kind": "TOOL", "tool.name": "get_weather", key: call_id}
        attributes.update({"input.value": json.dumps({"city": city}), "output.value": output})
        return span(n, "get_weather", start, start + 3, attributes, parent=1)

    spans = [
        span(1, "agent", 0, 50, {"openinference.span.kind": "AGENT"}),
        llm(2, 1, prompt, asked),
        tool(3, 10, "call_b", "Rome", "Sunny"),  # Rome ran first
        tool(4, 11, "call_a", "Paris", "Rainy"),
        llm(5, 20, [*prompt, asked, *results], {"role": "assistant", "content": "Rainy in Paris, sunny in Rome."}),
    ]
    run = only_run(runs_from_records(spans))
    assert [describe(s) for s in run.steps][2:4] == [
        ("tool", "get_weather", "call_a", {"city": "Paris"}, "Rainy", None),
        ("tool", "get_weather", "call_b", {"city": "Rome"}, "Sunny", None),
    ]
    assert [s.span_id for s in run.steps] == [sid(n) for n in (2, 2, 4, 3, 5)]


def test_openinference_openai_agents_trace() -> None:
    """As openinference-instrumentation-openai-agents writes it (its _processor.py): the trace is an AGENT span
    named after the trace, the agent an AGENT span named after the agent, GenerationSpanData spans named
    "generation" whose tool-call index is not reset between messages, FunctionSpanData TOOL spans with tool.name /
    input.value / output.value and ERROR status "{message}: {data}"; arguments "{}" are left out."""
    workflow, agent = 1, 2
    system = {"llm.system": "openai"}  # set on every span at start
    history = [
        {"role": "system", "content": "You tell the time."},
        {"role": "user", "content": "What time is it in Tokyo?"},
    ]
    call_a = _call("call_tz1", "get_time", {"city": "Tokyo"})
    call_b = _call("call_clock", "utc_now", {})
    m1_out = {"role": "assistant", "content": None, "tool_calls": [call_a]}
    m2_out = {"role": "assistant", "content": None, "tool_calls": [call_b]}

    def generation(n: int, start: int, prompt: list[dict[str, Any]], out: dict[str, Any]) -> SpanRecord:
        attributes: dict[str, Any] = {**system, "openinference.span.kind": "LLM", "llm.model_name": MODEL}
        tool_call_index = 0
        for prefix, messages in (("llm.input_messages", prompt), ("llm.output_messages", [out])):
            for i, m in enumerate(messages):
                attributes[f"{prefix}.{i}.message.role"] = m["role"]
                if m.get("content"):
                    attributes[f"{prefix}.{i}.message.content"] = m["content"]
                if m.get("tool_call_id"):
                    attributes[f"{prefix}.{i}.message.tool_call_id"] = m["tool_call_id"]
                for c in m.get("tool_calls", ()):
                    p = f"{prefix}.{i}.message.tool_calls.{tool_call_index}.tool_call"
                    attributes[f"{p}.id"] = c["id"]
                    attributes[f"{p}.function.name"] = c["function"]["name"]
                    if c["function"]["arguments"] != "{}":
                        attributes[f"{p}.function.arguments"] = c["function"]["arguments"]
                    tool_call_index += 1
        return span(n, "generation", start, start + 5, attributes, parent=agent)

    def function(n: int, start: int, name: str, arguments: str, output: str | None) -> SpanRecord:
        attributes = {**system, "openinference.span.kind": "TOOL", "tool.name": name, "input.value": arguments}
        if output is None:
            return span(
                n,
                name,
                start,
                start + 1,
                attributes,
                parent=agent,
                status=STATUS_ERROR,
                message="Error running tool: timezone db offline",
            )
        return span(n, name, start, start + 1, {**attributes, "output.value": output}, parent=agent, status=STATUS_OK)

    failed = "An error occurred while running the tool. Please try again. Error: timezone db offline"
    spans = [
        span(workflow, "Agent workflow", 0, 100, {"openinference.span.kind": "AGENT"}, status=STATUS_OK),
        span(agent, "Time agent", 1, 99, {**system, "openinference.span.kind": "AGENT"}, parent=workflow),
        generation(3, 10, history, m1_out),
        function(4, 16, "get_time", '{"city": "Tokyo"}', None),
        generation(5, 20, [*history, m1_out, {"role": "tool", "tool_call_id": "call_tz1", "content": failed}], m2_out),
        function(6, 26, "utc_now", "{}", "2025-06-15T09:00:00Z"),
        generation(
            7,
            30,
            [
                *history,
                m1_out,
                {"role": "tool", "tool_call_id": "call_tz1", "content": failed},
                m2_out,
                {"role": "tool", "tool_call_id": "call_clock", "content": "2025-06-15T09:00:00Z"},
            ],
            {"role": "assistant", "content": "It is 18:00 in Tokyo."},
        ),
    ]
    run = only_run(runs_from_records(spans))
    assert [describe(s) for s in run.steps] == [
        ("user", "What time is it in Tokyo?"),
        ("assistant", None, (("call_tz1", "get_time", {"city": "Tokyo"}),)),
        ("tool", "get_time", "call_tz1", {"city": "Tokyo"}, failed, "Error running tool: timezone db offline"),
        ("assistant", None, (("call_clock", "utc_now", {}),)),
        ("tool", "utc_now", "call_clock", {}, "2025-06-15T09:00:00Z", None),
        ("assistant", "It is 18:00 in Tokyo.", ()),
    ]
    assert [s.span_id for s in run.steps] == [sid(n) for n in (3, 3, 4, 5, 6, 7)]
    assert run.system_instructions == "You tell the time."
    # The agent is the agent span around the steps, not the trace's span named after the trace.
    assert run.agent_name == "Time agent"


# --- (e) OpenLLMetry / Traceloop, (c) the older GenAI names --------------------------------------------------


def openllmetry_prompts(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """As opentelemetry-instrumentation-openai's chat_wrappers._set_prompts writes them (empty values skipped)."""
    out: dict[str, Any] = {}
    for i, m in enumerate(messages):
        prefix = f"gen_ai.prompt.{i}"
        out[f"{prefix}.role"] = m["role"]
        if m.get("content"):
            out[f"{prefix}.content"] = m["content"]
        if m.get("tool_call_id"):
            out[f"{prefix}.tool_call_id"] = m["tool_call_id"]
        for j, c in enumerate(m.get("tool_calls", ())):
            out[f"{prefix}.tool_calls.{j}.id"] = c["id"]
            out[f"{prefix}.tool_calls.{j}.name"] = c["function"]["name"]
            out[f"{prefix}.tool_calls.{j}.arguments"] = c["function"]["arguments"]
    return out


def openllmetry_completion(message: Mapping[str, Any], finish_reason: str) -> dict[str, Any]:
    """As chat_wrappers._set_completions writes choice 0."""
    out: dict[str, Any] = {"gen_ai.completion.0.finish_reason": finish_reason, "gen_ai.completion.0.role": "assistant"}
    if message.get("content"):
        out["gen_ai.completion.0.content"] = message["content"]
    for j, c in enumerate(message.get("tool_calls", ())):
        out[f"gen_ai.completion.0.tool_calls.{j}.id"] = c["id"]
        out[f"gen_ai.completion.0.tool_calls.{j}.name"] = c["function"]["name"]
        out[f"gen_ai.completion.0.tool_calls.{j}.arguments"] = c["function"]["arguments"]
    return out


def openllmetry_functions(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """As shared.set_tools_attributes writes the request's tools."""
    out: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        fn = tool["function"]
        out[f"llm.request.functions.{i}.name"] = fn["name"]
        out[f"llm.request.functions.{i}.description"] = fn["description"]
        out[f"llm.request.functions.{i}.parameters"] = json.dumps(fn["parameters"])
    return out


def openllmetry_chat_span(i: int, *, parent: int, legacy_usage: bool, context: Mapping[str, Any]) -> SpanRecord:
    prompt, answer, finish = MODEL_CALLS[i]
    usage = (
        {"gen_ai.usage.prompt_tokens": USAGE[i][0], "gen_ai.usage.completion_tokens": USAGE[i][1]}
        if legacy_usage
        else {"gen_ai.usage.input_tokens": USAGE[i][0], "gen_ai.usage.output_tokens": USAGE[i][1]}
    )
    attributes = {
        **context,
        "llm.request.type": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": MODEL,
        "llm.is_streaming": False,
        "llm.headers": "None",
        "gen_ai.openai.api_base": "https://api.openai.com/v1/",
        "gen_ai.response.model": RESPONSE_MODEL,
        "gen_ai.response.id": f"chatcmpl-AfXv{i}",
        "llm.usage.total_tokens": sum(USAGE[i]),
        **usage,
        **openllmetry_prompts(prompt),
        **openllmetry_functions([WEATHER_TOOL]),
        **openllmetry_completion(answer, finish),
    }
    return step_span(f"m{i + 1}", "openai.chat", attributes, parent=parent)


def traceloop_trace() -> list[SpanRecord]:
    # Mirrors OpenLLMetry (traceloop/openllmetry): traceloop-sdk decorators/base.py (@workflow / @agent / @tool:
    # span "{name}.{kind}", traceloop.span.kind, traceloop.entity.name, traceloop.entity.input =
    # json.dumps({"args", "kwargs"}), traceloop.entity.output = json.dumps(result), ERROR status str(e) on raise),
    # association properties as traceloop.association.properties.*, and opentelemetry-instrumentation-openai's
    # "openai.chat" spans (llm.request.type, gen_ai.system, gen_ai.prompt.N.* from _set_prompts,
    # gen_ai.completion.N.* from _set_completions, llm.request.functions.N.* from set_tools_attributes,
    # gen_ai.usage.input_tokens / output_tokens).
    workflow, agent = IDS["root"], 2
    context = {
        "traceloop.workflow.name": "weather_chat",
        "traceloop.association.properties.session_id": "chat-3121",
    }
    spans = [
        span(
            workflow,
            "weather_chat.workflow",
            0,
            100,
            {
                **context,
                "traceloop.span.kind": "workflow",
                "traceloop.entity.name": "weather_chat",
                "traceloop.entity.input": json.dumps({"args": [[U1, U2]], "kwargs": {}}),
                "traceloop.entity.output": json.dumps(A2),
            },
        ),
        span(
            agent,
            "weather_agent.agent",
            1,
            99,
            {**context, "traceloop.span.kind": "agent", "traceloop.entity.name": "weather_agent"},
            parent=workflow,
        ),
    ]
    spans += [openllmetry_chat_span(i, parent=agent, legacy_usage=False, context=context) for i in range(4)]
    tool = {**context, "traceloop.span.kind": "tool", "traceloop.entity.name": "get_weather"}
    tool["traceloop.entity.path"] = "weather_agent"
    spans.append(
        step_span(
            "t1",
            "get_weather.tool",
            {
                **tool,
                "traceloop.entity.input": json.dumps({"args": [], "kwargs": {"city": "Paris"}}),
                "traceloop.entity.output": json.dumps(RESULT_1),
            },
            parent=agent,
        )
    )
    spans.append(
        step_span(
            "t2",
            "get_weather.tool",
            {**tool, "traceloop.entity.input": json.dumps({"args": [], "kwargs": {"city": "Rome"}})},
            parent=agent,
            status=STATUS_ERROR,
            message=ERROR_2,
        )
    )
    return spans


@VIA
def test_traceloop_agent_trace(via: str) -> None:
    run = only_run(read(traceloop_trace(), via))
    assert_weather_run(run, finish_reasons=["tool_calls", "stop", "tool_calls", "stop"], provider="openai")
    assert run.agent_name == "weather_agent"
    assert run.conversation_id == "chat-3121"
    # The tool's output is JSON-encoded by the SDK (json.dumps of the returned str); the step holds the text.
    assert run.steps[2].kind == "tool" and run.steps[2].result == RESULT_1


def legacy_trace() -> list[SpanRecord]:
    # Mirrors the older GenAI attribute names as opentelemetry-instrumentation-openai (OpenLLMetry) wrote them
    # before the gen_ai.usage.input/output_tokens rename: gen_ai.system, gen_ai.usage.prompt_tokens /
    # completion_tokens, indexed gen_ai.prompt.N.role / content / tool_call_id / tool_calls.M.*, gen_ai.completion.N.
    # role / content / finish_reason / tool_calls.M.id / name / arguments, llm.request.functions.N.*. No Traceloop
    # SDK: no workflow or agent span. The application runs its tools in GenAI `execute_tool` spans of its own,
    # under its HTTP server span.
    server = IDS["root"]
    spans = [
        span(
            server,
            "POST /chat",
            0,
            100,
            {"http.request.method": "POST", "http.route": "/chat", "http.response.status_code": 200},
        )
    ]
    spans += [openllmetry_chat_span(i, parent=server, legacy_usage=True, context={}) for i in range(4)]
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}
    spans.append(
        step_span(
            "t1",
            "execute_tool get_weather",
            {**tool, "gen_ai.tool.call.id": CALL_1, "gen_ai.tool.call.result": RESULT_1},
            parent=server,
        )
    )
    spans.append(
        step_span(
            "t2",
            "execute_tool get_weather",
            {**tool, "gen_ai.tool.call.id": CALL_2},
            parent=server,
            status=STATUS_ERROR,
            message=ERROR_2,
        )
    )
    return spans


@VIA
def test_legacy_genai_names_trace(via: str) -> None:
    run = only_run(read(legacy_trace(), via))
    assert_weather_run(run, finish_reasons=["tool_calls", "stop", "tool_calls", "stop"], provider="openai")
    # No agent span and no gen_ai.agent.name: the service that sent the spans names the agent (over OTLP, the
    # resource's service.name).
    assert run.agent_name == ("weather-bot" if via == "otlp" else None)
    assert run.conversation_id is None


def test_operation_name_with_legacy_indexed_messages() -> None:
    """LiteLLM's OpenTelemetry callback sets gen_ai.operation.name = chat but writes the messages as indexed
    gen_ai.prompt.N.* / gen_ai.completion.N.* (SpanAttributes.LLM_PROMPTS / LLM_COMPLETIONS), tool calls as
    .tool_calls.M.function.name / .function.arguments."""
    prompt, answer, _ = MODEL_CALLS[1]
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": RESPONSE_MODEL,
        "gen_ai.usage.input_tokens": 97,
        "gen_ai.usage.output_tokens": 12,
    }
    for i, m in enumerate(prompt):
        attributes[f"gen_ai.prompt.{i}.role"] = m["role"]
        if m.get("content"):
            attributes[f"gen_ai.prompt.{i}.content"] = m["content"]
        if m.get("tool_call_id"):
            attributes[f"gen_ai.prompt.{i}.tool_call_id"] = m["tool_call_id"]
        for j, c in enumerate(m.get("tool_calls", ())):
            attributes[f"gen_ai.prompt.{i}.tool_calls.{j}.id"] = c["id"]
            attributes[f"gen_ai.prompt.{i}.tool_calls.{j}.type"] = "function"
            attributes[f"gen_ai.prompt.{i}.tool_calls.{j}.function.name"] = c["function"]["name"]
            attributes[f"gen_ai.prompt.{i}.tool_calls.{j}.function.arguments"] = c["function"]["arguments"]
    attributes["gen_ai.completion.0.finish_reason"] = "stop"
    attributes["gen_ai.completion.0.role"] = "assistant"
    attributes["gen_ai.completion.0.content"] = answer["content"]
    run = only_run(runs_from_records([span(1, "litellm_request", 0, 10, attributes)]))
    assert [describe(s) for s in run.steps] == [
        ("user", U1),
        ("assistant", None, ((CALL_1, "get_weather", {"city": "Paris"}),)),
        ("tool", "get_weather", CALL_1, {"city": "Paris"}, RESULT_1, None),
        ("assistant", A1, ()),
    ]
    assert run.system_instructions == SYSTEM
    assert (run.steps[3].model, run.steps[3].input_tokens) == (RESPONSE_MODEL, 97)  # type: ignore[union-attr]


# --- (a) this package's own spans ------------------------------------------------------------------------------


def test_own_spans_with_tool_error_through_sdk_and_otlp_encoder() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    http = provider.get_tracer("http.server")

    def get_weather(city: str) -> str:
        if city == "Rome":
            raise TimeoutError(ERROR_2)
        return RESULT_1

    with (
        http.start_as_current_span("POST /chat", attributes={"http.request.method": "POST"}),
        agent_run(
            "weather-agent",
            conversation_id="c-9",
            system_instructions=SYSTEM,
            tool_definitions=[WEATHER_TOOL],
            tracer_provider=provider,
        ) as run,
    ):
        run.user_message(U1)
        with run.chat(model=MODEL, provider="openai") as call:
            call.set_response(tool_calls=[{"id": CALL_1, "name": "get_weather", "arguments": {"city": "Paris"}}])
        run.execute(call.tool_calls[0], get_weather)
        with run.chat(model=MODEL, provider="openai") as call:
            call.set_response(content=A1)
        run.user_message(U2)
        with run.chat(model=MODEL, provider="openai") as call:
            call.set_response(tool_calls=[{"id": CALL_2, "name": "get_weather", "arguments": {"city": "Rome"}}])
        with pytest.raises(TimeoutError):
            run.execute(call.tool_calls[0], get_weather)
        with run.chat(model=MODEL, provider="openai") as call:
            call.set_response(content=A2)
    finished = exporter.get_finished_spans()
    provider.shutdown()

    expected = [*EXPECTED_STEPS]
    expected[6] = ("tool", "get_weather", CALL_2, {"city": "Rome"}, None, ERROR_2)  # no result was fed back
    for run_read in (runs_from_spans(finished), runs_from_request(encode_spans(finished))):
        got = only_run(run_read)
        assert [describe(s) for s in got.steps] == expected
        assert [s.index for s in got.steps] == list(range(8))
        assert (got.agent_name, got.conversation_id, got.system_instructions) == ("weather-agent", "c-9", SYSTEM)
        assert got.tool_definitions == EXPECTED_TOOLS
        root = next(s for s in finished if s.name == "invoke_agent weather-agent")
        assert got.root_span_id == format(root.context.span_id, "016x")


# --- spans that are not agent steps ---------------------------------------------------------------------------


def http_and_db_spans(*, trace: str = TRACE, parent: int | None = None, base: int = 100) -> list[SpanRecord]:
    # Ordinary instrumentation: an HTTP server span (http.request.method / http.route / url.path), a database
    # client span (db.system / db.query.text), an outgoing HTTP client span (url.full) - no agent attributes.
    server = span(
        base,
        "POST /chat",
        0,
        200,
        {
            "http.request.method": "POST",
            "http.route": "/chat",
            "url.path": "/chat",
            "url.scheme": "https",
            "http.response.status_code": 200,
            "server.address": "weather.example.com",
        },
        parent=parent,
        trace=trace,
    )
    db = span(
        base + 1,
        "SELECT conversations",
        2,
        4,
        {
            "db.system": "postgresql",
            "db.namespace": "chat",
            "db.operation.name": "SELECT",
            "db.query.text": "SELECT history FROM conversations WHERE id = $1",
        },
        parent=base,
        trace=trace,
    )
    client = span(
        base + 2,
        "GET",
        22,
        24,
        {"http.request.method": "GET", "url.full": "https://api.weather.example/v1/now?city=Paris"},
        parent=base,
        trace=trace,
        status=STATUS_ERROR,
        message="503 Service Unavailable",
    )
    return [server, db, client]


@pytest.mark.parametrize(
    ("fixture", "root"),
    [(genai_trace, IDS["root"]), (openinference_trace, IDS["root"]), (traceloop_trace, 2), (legacy_trace, None)],
)
def test_non_agent_spans_are_ignored(fixture: Any, root: int | None) -> None:
    plain = only_run(runs_from_records(fixture()))
    noise = http_and_db_spans()
    # The agent's root becomes a child of the HTTP server span.
    mixed = [replace(s, parent_span_id=sid(100)) if s.parent_span_id is None else s for s in fixture()]
    run = only_run(runs_from_records(noise + mixed))
    assert run == plain
    # The run's root is its agent span (Traceloop: the agent inside the workflow); without one (the legacy
    # fixture's steps sit right under its own HTTP span) the innermost span around the steps.
    assert run.root_span_id == sid(root if root is not None else IDS["root"])
    assert not {sid(n) for n in (100, 101, 102)} & {s.span_id for s in run.steps}
    # Lean records, as the processor reads them: the same run, the HTTP and database spans kept as shapes.
    request = ExportTraceServiceRequest.FromString(to_request(noise + mixed).SerializeToString())
    lean = list(records_from_request(request, lean=True))
    assert only_run(runs_from_records(lean)) == only_run(runs_from_request(request))
    by_id = {r.span_id: r for r in lean}
    assert all(by_id[sid(n)].attributes == {} for n in (100, 101, 102))
    assert by_id[sid(100)].name == noise[0].name and by_id[sid(100)].parent_span_id is None


def test_a_lean_record_keeps_the_agent_name_that_names_a_run() -> None:
    """Steps under no agent span take the agent's name from the first span that carries one, marked or not."""
    spans = [s for s in traceloop_trace() if s.name != "weather_agent.agent"]
    spans = [replace(s, parent_span_id=sid(100)) if s.parent_span_id is None else s for s in spans]
    http = [replace(http_and_db_spans()[0], attributes={"gen_ai.agent.name": "weather-desk", "http.route": "/"})]
    request = ExportTraceServiceRequest.FromString(to_request(http + spans).SerializeToString())
    lean = list(records_from_request(request, lean=True))
    assert next(r for r in lean if r.span_id == sid(100)).attributes == {"gen_ai.agent.name": "weather-desk"}
    assert only_run(runs_from_records(lean)) == only_run(runs_from_request(request))


def test_root_without_agent_span_is_the_common_ancestor_of_the_steps() -> None:
    """OpenLLMetry spans under a Traceloop workflow (no agent span), the workflow under an HTTP server span."""
    spans = [s for s in traceloop_trace() if s.name != "weather_agent.agent"]
    spans = [
        replace(s, parent_span_id=sid(100)) if s.parent_span_id is None else replace(s, parent_span_id=sid(1))
        for s in spans
    ]
    run = only_run(runs_from_records(http_and_db_spans() + spans))
    assert [describe(s) for s in run.steps] == EXPECTED_STEPS
    assert run.root_span_id == sid(1)  # the workflow, not the HTTP server span
    assert run.agent_name is None


def test_trace_with_only_non_agent_spans_yields_no_run() -> None:
    assert runs_from_records(http_and_db_spans()) == []
    assert runs_from_request(to_request(http_and_db_spans())) == []
    # An OpenInference CHAIN / RETRIEVER span, an OpenLLMetry embeddings span and a GenAI embeddings span are
    # model-adjacent but are no agent step either.
    other = [
        span(10, "RunnableSequence", 0, 9, {"openinference.span.kind": "CHAIN", "input.value": "hi"}),
        span(11, "retrieve", 1, 2, {"openinference.span.kind": "RETRIEVER", "input.value": "weather"}),
        span(
            12,
            "openai.embeddings",
            3,
            4,
            {"llm.request.type": "embedding", "gen_ai.system": "openai", "gen_ai.prompt.0.content": "weather Paris"},
        ),
        span(13, "embeddings text-embedding-3-small", 5, 6, {"gen_ai.operation.name": "embeddings"}),
    ]
    assert runs_from_records(other) == []


def test_only_traces_with_agent_steps_become_runs() -> None:
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    runs = runs_from_records(http_and_db_spans(trace=other_trace) + genai_trace())
    assert [r.trace_id for r in runs] == [TRACE]


def test_embedding_span_inside_an_agent_trace_is_not_a_user_message() -> None:
    """OpenLLMetry's embeddings_wrappers._set_prompts writes the embedded text as gen_ai.prompt.N.content, no role."""
    spans = traceloop_trace()
    spans.append(
        span(
            20,
            "openai.embeddings",
            36,
            38,
            {
                "llm.request.type": "embedding",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.prompt.0.content": "weather in Rome",
            },
            parent=2,
        )
    )
    run = only_run(runs_from_records(spans))
    assert [describe(s) for s in run.steps] == EXPECTED_STEPS


# --- malformed input ------------------------------------------------------------------------------------------


@VIA
def test_malformed_genai_json_is_skipped_and_the_rest_still_read(via: str) -> None:
    spans = []
    for s in genai_trace():
        attributes = dict(s.attributes)
        if s.span_id == sid(IDS["m1"]):
            attributes["gen_ai.input.messages"] = '[{"role": "user", "parts": [{"type": "text", "content": "What'
            attributes["gen_ai.tool.definitions"] = "{not json"
        if s.span_id == sid(IDS["m3"]):
            messages = json.loads(attributes["gen_ai.input.messages"])
            messages.insert(1, {"role": "narrator", "parts": [{"type": "text", "content": "meanwhile"}]})
            messages.insert(2, {"role": "assistant", "parts": [{"type": "tool_call", "arguments": {"x": 1}}]})
            attributes["gen_ai.input.messages"] = json.dumps(messages)
        if s.span_id == sid(IDS["m4"]):
            attributes["gen_ai.output.messages"] = "42"  # JSON, but not a list of messages
        spans.append(replace(s, attributes=attributes))
    run = only_run(read(spans, via))
    # The first prompt is lost; its user message is recovered from the next prompt, which repeats it. The last
    # answer is lost; nothing else is.
    assert [describe(s) for s in run.steps] == EXPECTED_STEPS[:-1]
    assert [s.span_id for s in run.steps] == [sid(IDS[k]) for k in ["m2", "m1", "t1", "m2", "m3", "m3", "t2"]]
    assert run.tool_definitions == EXPECTED_TOOLS  # read from the other model calls


def test_malformed_values_of_every_kind_do_not_crash() -> None:
    weird: list[Any] = ["42", "null", '"text"', "{}", "[1, 2]", "[[]]", '{"role": 7}', "", "[{", ["a", "b"], 3, True]
    spans = []
    for i, value in enumerate(weird):
        start = i * 10
        spans += [
            span(
                100 + i,
                "chat",
                start,
                start + 1,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": value,
                    "gen_ai.output.messages": value,
                    "gen_ai.system_instructions": value,
                    "gen_ai.tool.definitions": value,
                },
            ),
            span(
                200 + i,
                "execute_tool",
                start + 2,
                start + 3,
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "t",
                    "gen_ai.tool.call.arguments": value,
                    "gen_ai.tool.call.result": value,
                },
            ),
            span(
                300 + i,
                "ChatCompletion",
                start + 4,
                start + 5,
                {
                    "openinference.span.kind": "LLM",
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": "hello",
                    "llm.output_messages.0.message.role": value if isinstance(value, str) and value else "assistant",
                    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "t",
                    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": value,
                    "llm.tools.0.tool.json_schema": value,
                },
            ),
            span(
                400 + i,
                "t.tool",
                start + 6,
                start + 7,
                {
                    "traceloop.span.kind": "tool",
                    "traceloop.entity.name": "t",
                    "traceloop.entity.input": value,
                    "traceloop.entity.output": value,
                },
            ),
            span(
                500 + i,
                "invoke_agent",
                start + 8,
                start + 9,
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "agent_eval.reference.actions": value,
                },
            ),
        ]
    run = only_run(runs_from_records(spans))
    assert [s.content for s in run.steps if isinstance(s, UserMessage)] == ["hello"]
    # The OpenInference answers whose role is readable ("", a list, a number, a bool fall back to assistant).
    assert len([s for s in run.steps if isinstance(s, AssistantMessage)]) == 4
    assert len([s for s in run.steps if isinstance(s, ToolExecution)]) == 2 * len(weird)  # GenAI + Traceloop


# --- tool matching without call ids, and without tool spans ----------------------------------------------------


def test_tool_spans_without_call_id_matched_by_name_and_order() -> None:
    """Traceloop @tool spans carry no call id. Parallel calls ran in another order than the model asked them;
    each span still goes to the call of its own tool, and two calls of one tool go in order."""
    workflow = 1
    context = {"traceloop.workflow.name": "trip"}
    calls = [
        _call("call_w1", "get_weather", {"city": "Paris"}),
        _call("call_t1", "get_time", {"city": "Paris"}),
        _call("call_w2", "get_weather", {"city": "Rome"}),
    ]
    results = {"call_w1": "Rainy", "call_t1": "14:05", "call_w2": "Sunny"}
    prompt = [{"role": "user", "content": "Weather and time in Paris, weather in Rome?"}]
    asked = {"role": "assistant", "content": None, "tool_calls": calls}
    answered: list[dict[str, Any]] = [
        *prompt,
        asked,
        *({"role": "tool", "tool_call_id": k, "content": v} for k, v in results.items()),
    ]

    def chat(n: int, start: int, messages: list[dict[str, Any]], out: dict[str, Any], finish: str) -> SpanRecord:
        attributes = {**context, "llm.request.type": "chat", "gen_ai.system": "openai"}
        attributes.update(openllmetry_prompts(messages))
        attributes.update(openllmetry_completion(out, finish))
        return span(n, "openai.chat", start, start + 5, attributes, parent=workflow)

    def tool(n: int, start: int, name: str, city: str, result: str) -> SpanRecord:
        return span(
            n,
            f"{name}.tool",
            start,
            start + 1,
            {
                **context,
                "traceloop.span.kind": "tool",
                "traceloop.entity.name": name,
                "traceloop.entity.input": json.dumps({"args": [city], "kwargs": {}}),
                "traceloop.entity.output": json.dumps(result),
            },
            parent=workflow,
        )

    spans = [
        span(workflow, "trip.workflow", 0, 100, {**context, "traceloop.span.kind": "workflow"}),
        chat(2, 10, prompt, asked, "tool_calls"),
        tool(3, 16, "get_time", "Paris", "14:05"),  # the time ran first
        tool(4, 18, "get_weather", "Paris", "Rainy"),
        tool(5, 20, "get_weather", "Rome", "Sunny"),
        chat(6, 30, answered, {"role": "assistant", "content": "Rainy, 14:05; sunny in Rome."}, "stop"),
    ]
    run = only_run(runs_from_records(spans))
    assert [describe(s) for s in run.steps] == [
        ("user", "Weather and time in Paris, weather in Rome?"),
        (
            "assistant",
            None,
            (
                ("call_w1", "get_weather", {"city": "Paris"}),
                ("call_t1", "get_time", {"city": "Paris"}),
                ("call_w2", "get_weather", {"city": "Rome"}),
            ),
        ),
        ("tool", "get_weather", "call_w1", {"city": "Paris"}, "Rainy", None),
        ("tool", "get_time", "call_t1", {"city": "Paris"}, "14:05", None),
        ("tool", "get_weather", "call_w2", {"city": "Rome"}, "Sunny", None),
        ("assistant", "Rainy, 14:05; sunny in Rome.", ()),
    ]
    assert [s.span_id for s in run.steps] == [sid(n) for n in (2, 2, 4, 3, 5, 6)]


def test_tool_span_with_no_call_keeps_its_own_arguments() -> None:
    """A tool span the model did not ask for (the agent ran it on its own) is a step where it ran."""
    spans = [
        span(1, "invoke_agent", 0, 50, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}),
        span(
            2,
            "execute_tool load_profile",
            1,
            2,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "load_profile",
                "gen_ai.tool.call.arguments": '{"user_id": "u-1"}',
                "gen_ai.tool.call.result": '{"tier": "gold"}',
            },
            parent=1,
        ),
        span(
            3,
            "chat",
            5,
            9,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.input.messages": json.dumps([genai_parts({"role": "user", "content": "hi"})]),
                "gen_ai.output.messages": json.dumps(
                    [genai_parts({"role": "assistant", "content": "Hello, gold member."})]
                ),
            },
            parent=1,
        ),
    ]
    run = only_run(runs_from_records(spans))
    assert [describe(s) for s in run.steps] == [
        ("tool", "load_profile", None, {"user_id": "u-1"}, '{"tier": "gold"}', None),
        ("user", "hi"),
        ("assistant", "Hello, gold member.", ()),
    ]


@VIA
def test_tool_results_only_in_prompts(via: str) -> None:
    """OpenLLMetry's openai instrumentation alone: no tool spans; tool results are read from the prompts."""
    spans = [s for s in legacy_trace() if not s.name.startswith("execute_tool")]
    run = only_run(read(spans, via))
    expected = [*EXPECTED_STEPS]
    # The failure is only known from what the agent fed back, and nothing marks it as one.
    expected[6] = ("tool", "get_weather", CALL_2, {"city": "Rome"}, FED_BACK_2, None)
    assert [describe(s) for s in run.steps] == expected
    # Tool results come from the prompt of the model call that first carried them.
    assert [s.span_id for s in run.steps] == [sid(IDS[k]) for k in ["m1", "m1", "m2", "m2", "m3", "m3", "m4", "m4"]]
    assert run.system_instructions == SYSTEM
    assert run.tool_definitions == EXPECTED_TOOLS


def test_tool_call_objects_round_trip() -> None:
    """The calls on assistant steps are full ToolCall values, arguments decoded from the JSON text."""
    run = only_run(runs_from_records(traceloop_trace()))
    first = run.steps[1]
    assert isinstance(first, AssistantMessage)
    assert first.tool_calls == (ToolCall(id=CALL_1, name="get_weather", arguments={"city": "Paris"}),)


def test_own_spans_with_another_instrumentation_nested_inside() -> None:
    """`run.chat` around an OpenAI client that openinference-instrumentation-openai also traces, and a tool that
    OITracer's @tracer.tool also traces: the nested LLM / TOOL spans are the same steps, not new ones."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    oi = provider.get_tracer("openinference.instrumentation.openai")

    def traced_llm(prompt: list[dict[str, Any]], answer: dict[str, Any]) -> None:
        attributes: dict[str, Any] = {"openinference.span.kind": "LLM", "llm.model_name": RESPONSE_MODEL}
        for n, message in enumerate(prompt):
            attributes.update(oi_message(f"llm.input_messages.{n}", message))
        attributes.update(oi_message("llm.output_messages.0", answer))
        oi.start_span("ChatCompletion", attributes=attributes).end()

    def get_weather(city: str) -> str:
        with oi.start_as_current_span(
            "get_weather",
            attributes={"openinference.span.kind": "TOOL", "tool.name": "get_weather", "input.value": city},
        ) as span:
            span.set_attribute("output.value", RESULT_1)
        return RESULT_1

    with agent_run("weather-agent", system_instructions=SYSTEM, tracer_provider=provider) as run:
        run.user_message(U1)
        with run.chat(model=MODEL, provider="openai") as call:
            traced_llm(MODEL_CALLS[0][0], M_CALL_1)
            call.set_response(tool_calls=[{"id": CALL_1, "name": "get_weather", "arguments": {"city": "Paris"}}])
        run.execute(call.tool_calls[0], get_weather)
        with run.chat(model=MODEL, provider="openai") as call:
            traced_llm(MODEL_CALLS[1][0], M_A1)
            call.set_response(content=A1)
    finished = exporter.get_finished_spans()
    provider.shutdown()
    assert len(finished) == 8
    got = only_run(runs_from_spans(finished))
    assert [describe(s) for s in got.steps] == EXPECTED_STEPS[:4]
    assert [s.index for s in got.steps] == [0, 1, 2, 3]
