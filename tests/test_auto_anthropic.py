"""The Anthropic instrumentor, with the real ``anthropic`` SDK talking to a local server (tests/llm_server.py).

The agents here are written on the bare SDK, as an application would, with no tracing code but ``@tool``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.resources.messages import AsyncMessages, Messages
from llm_server import LLMServer, anthropic_message, broken_stream, http_error
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.instrument import ContentPolicy, conversation, tool
from otel_agent_eval.instrument.auto import anthropic as anthropic_auto
from otel_agent_eval.instrument.auto.anthropic import AnthropicInstrumentor

MODEL = "claude-test"
SYSTEM = "You answer questions about the weather. Be brief."
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
SERVER_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    return f"{city}: sunny, 21 degrees {unit}"


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_followed_run() -> Iterator[None]:
    """Each test's agent starts afresh: the conversation a test left behind (in this thread's context, with the
    tracer of a provider shut down since) is not continued by the next test's identical first message."""
    token = conversation._followed.set(())
    yield
    conversation._followed.reset(token)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The instrumentor on, recording into memory; off again afterwards (it is a singleton)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=provider, content=ContentPolicy())
    try:
        yield memory
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


def client_for(server: LLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0)


def async_client_for(server: LLMServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0)


# --- the agent: plain SDK code ------------------------------------------------------------------------------


def request(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 256,
        "system": SYSTEM,
        "tools": [WEATHER_TOOL, SERVER_TOOL],
        "messages": messages,
    }


def read_events(events: Any) -> list[dict[str, Any]]:
    """The content blocks of a streamed answer, put together from its raw events as an application does."""
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.type == "content_block_start":
            block = event.content_block
            if block.type == "text":
                blocks[event.index] = {"type": "text", "text": ""}
            elif block.type == "tool_use":
                blocks[event.index] = {"type": "tool_use", "id": block.id, "name": block.name, "json": ""}
        elif event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                blocks[event.index]["text"] += event.delta.text
            elif event.delta.type == "input_json_delta":
                blocks[event.index]["json"] += event.delta.partial_json
    out = []
    for _, block in sorted(blocks.items()):
        if block["type"] == "tool_use":
            block = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": json.loads(block["json"])}
        out.append(block)
    return out


def field(block: Any, name: str) -> Any:
    return block[name] if isinstance(block, dict) else getattr(block, name)


def run_tools(content: list[Any]) -> list[dict[str, Any]]:
    """The tool results for the answer's tool uses (empty: the answer is final)."""
    return [
        {"type": "tool_result", "tool_use_id": field(b, "id"), "content": get_weather(**field(b, "input"))}
        for b in content
        if field(b, "type") == "tool_use"
    ]


def final_text(content: list[Any]) -> str:
    return "".join(field(b, "text") for b in content if field(b, "type") == "text")


def weather_agent(client: anthropic.Anthropic, question: str, *, how: str = "create") -> str:
    """Ask, run the tools the model asks for, ask again, until it answers with text."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    while True:
        content: list[Any]
        if how == "create":
            content = list(client.messages.create(**request(messages)).content)  # the SDK's blocks, sent back
        elif how == "stream=True":
            content = read_events(client.messages.create(**request(messages), stream=True))
        else:  # the stream helper
            with client.messages.stream(**request(messages)) as stream:
                content = list(stream.get_final_message().content)
        messages.append({"role": "assistant", "content": content})
        results = run_tools(content)
        if not results:
            return final_text(content)
        messages.append({"role": "user", "content": results})


async def async_weather_agent(client: anthropic.AsyncAnthropic, question: str) -> str:
    """The same agent on the async client: the first answer streamed, the next ones not."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    streamed = True
    while True:
        content: list[Any]
        if streamed:
            stream = await client.messages.create(**request(messages), stream=True)
            content = read_events([event async for event in stream])
        else:
            content = list((await client.messages.create(**request(messages))).content)
        streamed = False
        messages.append({"role": "assistant", "content": content})
        results = run_tools(content)
        if not results:
            return final_text(content)
        messages.append({"role": "user", "content": results})


def script_weather(server: LLMServer, tool_input: dict[str, Any] | None = None) -> None:
    server.script(
        anthropic_message(
            "Let me look that up.",
            tool_uses=[("toolu_weather_1", "get_weather", tool_input or {"city": "Paris", "unit": "celsius"})],
            usage=(120, 35),
            id="msg_first",
        ),
        anthropic_message("It is sunny in Paris, 21 degrees.", usage=(180, 12), id="msg_second"),
    )


def chat_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]


def content_of(span: ReadableSpan) -> dict[str, Any]:
    """What a model-call span says about the call, for comparing spans of the same call made otherwise."""
    attributes = dict(span.attributes or {})
    keys = [
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.id",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
    ]
    out: dict[str, Any] = {k: attributes.get(k) for k in keys}
    for key in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.definitions"):
        out[key] = json.loads(str(attributes[key]))
    return out


QUESTION = "What is the weather in Paris?"
TOOL_RESULT = "Paris: sunny, 21 degrees celsius"
SECOND_INPUT = [
    {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
    {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
    {
        "role": "assistant",
        "parts": [
            {"type": "text", "content": "Let me look that up."},
            {
                "type": "tool_call",
                "id": "toolu_weather_1",
                "name": "get_weather",
                "arguments": {"city": "Paris", "unit": "celsius"},
            },
        ],
    },
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "toolu_weather_1", "response": TOOL_RESULT}]},
]


# --- 1. a tool loop is one trace ----------------------------------------------------------------------------


def test_tool_loop_is_one_trace_of_genai_spans(exporter: InMemorySpanExporter, server: LLMServer) -> None:
    script_weather(server)
    with client_for(server) as client:
        answer = weather_agent(client, QUESTION)

    assert answer == "It is sunny in Paris, 21 degrees."
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert [s.name for s in spans] == [f"chat {MODEL}", "execute_tool get_weather", f"chat {MODEL}"]
    assert len({s.context.trace_id for s in spans}) == 1
    first, tool_span, second = spans
    assert first.parent is None  # the first call's span is the run's root
    assert tool_span.attributes is not None and tool_span.attributes["gen_ai.tool.call.id"] == "toolu_weather_1"
    assert json.loads(str(tool_span.attributes["gen_ai.tool.call.arguments"])) == {"city": "Paris", "unit": "celsius"}
    assert tool_span.attributes["gen_ai.tool.call.result"] == TOOL_RESULT

    one, two = content_of(first), content_of(second)
    assert one["gen_ai.provider.name"] == two["gen_ai.provider.name"] == "anthropic"
    assert one["gen_ai.request.model"] == MODEL
    assert (one["gen_ai.usage.input_tokens"], one["gen_ai.usage.output_tokens"]) == (120, 35)
    assert (two["gen_ai.usage.input_tokens"], two["gen_ai.usage.output_tokens"]) == (180, 12)
    assert (one["gen_ai.response.id"], two["gen_ai.response.id"]) == ("msg_first", "msg_second")
    assert one["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert two["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert one["gen_ai.input.messages"] == SECOND_INPUT[:2]
    assert two["gen_ai.input.messages"] == SECOND_INPUT
    [out_one] = one["gen_ai.output.messages"]
    assert out_one["role"] == "assistant"
    assert out_one["parts"] == SECOND_INPUT[2]["parts"]
    [out_two] = two["gen_ai.output.messages"]
    assert out_two["parts"] == [{"type": "text", "content": "It is sunny in Paris, 21 degrees."}]
    # the custom tool only: the server tool is Anthropic's to run
    assert [(t["name"], t["parameters"]) for t in one["gen_ai.tool.definitions"]] == [
        ("get_weather", WEATHER_TOOL["input_schema"])
    ]

    # the application's requests went out as it wrote them
    bodies = [r.body for r in server.requests]
    assert [len(b["messages"]) for b in bodies] == [1, 3]
    assert "stream" not in bodies[0]


# --- 2. the evaluator reads the run back --------------------------------------------------------------------


def test_evaluator_reads_the_run_and_labels_a_planted_failure(
    exporter: InMemorySpanExporter, server: LLMServer
) -> None:
    script_weather(server, tool_input={"city": "Paris", "unit": "kelvin"})  # not in the schema's enum
    with client_for(server) as client:
        weather_agent(client, QUESTION)

    [run] = runs_from_spans(exporter.get_finished_spans())
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]
    user, asked, ran, answered = run.steps
    assert user.content == QUESTION
    assert [(c.id, c.name, dict(c.arguments or {})) for c in asked.tool_calls] == [
        ("toolu_weather_1", "get_weather", {"city": "Paris", "unit": "kelvin"})
    ]
    assert (ran.call_id, ran.name, ran.result) == ("toolu_weather_1", "get_weather", "Paris: sunny, 21 degrees kelvin")
    assert answered.content == "It is sunny in Paris, 21 degrees."
    assert run.system_instructions == SYSTEM
    assert [t.name for t in run.tool_definitions] == ["get_weather"]

    evaluation = Engine().evaluate(run)
    wrong = [f for f in evaluation.findings if f.mode == "wrong_arguments"]
    assert wrong, evaluation.findings
    assert wrong[0].step == asked.index
    assert "unit" in wrong[0].critique


# --- 3. streamed answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["stream=True", "stream helper"])
def test_streamed_answers_are_recorded_as_the_same_spans(
    exporter: InMemorySpanExporter, server: LLMServer, how: str
) -> None:
    script_weather(server)
    with client_for(server) as client:
        assert weather_agent(client, QUESTION) == "It is sunny in Paris, 21 degrees."
    plain = [content_of(s) for s in chat_spans(exporter)]
    exporter.clear()

    script_weather(server)
    with client_for(server) as client:
        assert weather_agent(client, QUESTION, how=how) == "It is sunny in Paris, 21 degrees."

    assert [r.stream for r in server.requests] == [False, False, True, True]
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert [s.name for s in spans] == [f"chat {MODEL}", "execute_tool get_weather", f"chat {MODEL}"]
    assert len({s.context.trace_id for s in spans}) == 1
    assert [content_of(s) for s in chat_spans(exporter)] == plain  # tool input put together from its fragments
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans)


def test_a_stream_closed_early_ends_its_span(exporter: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(anthropic_message("One two three four five.", id="msg_early"))
    with client_for(server) as client:
        stream = client.messages.create(**request([{"role": "user", "content": "Count."}]), stream=True)
        for event in stream:
            if event.type == "content_block_delta":
                break
        stream.close()

    [span] = chat_spans(exporter)
    attributes = span.attributes or {}
    assert attributes["gen_ai.response.id"] == "msg_early"
    assert json.loads(str(attributes["gen_ai.output.messages"]))[0]["parts"] == [{"type": "text", "content": "One"}]


def test_async_client(exporter: InMemorySpanExporter, server: LLMServer) -> None:
    script_weather(server)

    async def main() -> str:
        async with async_client_for(server) as client:
            return await async_weather_agent(client, QUESTION)

    assert asyncio.run(main()) == "It is sunny in Paris, 21 degrees."
    assert [r.stream for r in server.requests] == [True, False]
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert [s.name for s in spans] == [f"chat {MODEL}", "execute_tool get_weather", f"chat {MODEL}"]
    assert len({s.context.trace_id for s in spans}) == 1
    first, second = (content_of(s) for s in chat_spans(exporter))
    assert first["gen_ai.output.messages"][0]["parts"] == SECOND_INPUT[2]["parts"]
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (120, 35)
    assert second["gen_ai.input.messages"] == SECOND_INPUT


def test_async_stream_helper(exporter: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(anthropic_message("Sunny.", usage=(40, 3), id="msg_async_helper"))

    async def main() -> str:
        async with async_client_for(server) as client:
            manager = client.messages.stream(**request([{"role": "user", "content": "Weather in Oslo?"}]))
            async with manager as stream:
                return "".join([text async for text in stream.text_stream])

    assert asyncio.run(main()) == "Sunny."
    [span] = chat_spans(exporter)
    recorded = content_of(span)
    assert recorded["gen_ai.output.messages"][0]["parts"] == [{"type": "text", "content": "Sunny."}]
    assert (recorded["gen_ai.response.id"], recorded["gen_ai.usage.input_tokens"]) == ("msg_async_helper", 40)


# --- 4. errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["create", "stream=True", "stream helper"])
def test_rate_limit_propagates_and_fails_the_span(exporter: InMemorySpanExporter, server: LLMServer, how: str) -> None:
    server.script(http_error(429, "Number of requests has exceeded your rate limit.", retry_after=30))
    with client_for(server) as client, pytest.raises(anthropic.RateLimitError) as raised:
        weather_agent(client, "Will it rain in Lyon?", how=how)

    assert type(raised.value) is anthropic.RateLimitError
    assert raised.value.status_code == 429
    assert "exceeded your rate limit" in str(raised.value)
    [span] = exporter.get_finished_spans()
    assert span.name == f"chat {MODEL}"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "RateLimitError"


def test_a_stream_broken_off_fails_the_span(exporter: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(broken_stream(anthropic_message("One two three four five six seven."), after=5))
    with client_for(server) as client, pytest.raises(Exception) as raised:
        for _ in client.messages.create(**request([{"role": "user", "content": "Count on."}]), stream=True):
            pass

    [span] = chat_spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == type(raised.value).__name__


# --- 5. never in the way ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["create", "stream=True", "stream helper"])
def test_a_failing_recorder_never_breaks_the_call(
    exporter: InMemorySpanExporter, server: LLMServer, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the recorder is broken")

    monkeypatch.setattr(anthropic_auto, "start_model_call", broken)
    script_weather(server)
    with client_for(server) as client:
        assert weather_agent(client, "And in Nice?", how=how) == "It is sunny in Paris, 21 degrees."
    assert chat_spans(exporter) == []
    assert len(server.requests) == 2


def test_a_raw_response_is_left_to_the_application(exporter: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(anthropic_message("Hello there."))
    with client_for(server) as client:
        raw = client.messages.with_raw_response.create(**request([{"role": "user", "content": "Hello?"}]))
        assert raw.parse().content[0].type == "text"

    [span] = chat_spans(exporter)
    attributes = span.attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"]))[-1]["parts"][0]["content"] == "Hello?"
    assert "gen_ai.output.messages" not in attributes  # the body is the application's to read
    assert span.status.status_code is not StatusCode.ERROR


def test_uninstrument_restores_the_sdk(server: LLMServer) -> None:
    methods = [(Messages, "create"), (AsyncMessages, "create"), (Messages, "stream"), (AsyncMessages, "stream")]
    originals = [vars(cls)[name] for cls, name in methods]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        assert all(vars(cls)[name] is not original for (cls, name), original in zip(methods, originals, strict=True))
    finally:
        instrumentor.uninstrument()
    assert [vars(cls)[name] for cls, name in methods] == originals
    assert all(vars(cls)[name] is original for (cls, name), original in zip(methods, originals, strict=True))

    server.script(anthropic_message("Hello."))
    with client_for(server) as client:
        reply = client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert reply.content[0].type == "text"
    assert memory.get_finished_spans() == ()
    provider.shutdown()


# --- the request, read ---------------------------------------------------------------------------------------


def test_input_messages_from_blocks() -> None:
    from anthropic.types import TextBlock, ToolUseBlock

    messages = anthropic_auto.anthropic_input_messages(
        [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}],
        [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image", "source": {}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    TextBlock(type="text", text="Checking."),
                    ToolUseBlock(type="tool_use", id="t1", name="a", input={"x": 1}),
                    ToolUseBlock(type="tool_use", id="t2", name="b", input={}),
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "one"}]},
                    {"type": "tool_result", "tool_use_id": "t2", "content": "failed", "is_error": True},
                ],
            },
        ],
    )
    assert [(m.role, m.content, m.tool_call_id, m.error) for m in messages] == [
        ("system", "Rule one.\nRule two.", None, False),
        ("user", "Hi", None, False),
        ("assistant", "Checking.", None, False),
        ("tool", "one", "t1", False),
        ("tool", "failed", "t2", True),
    ]
    assert [(c.id, c.name, c.arguments) for c in messages[2].tool_calls] == [("t1", "a", {"x": 1}), ("t2", "b", {})]
