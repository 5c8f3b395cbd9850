"""The OpenAI SDK instrumentor: the real SDK against a local server that speaks the API on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from llm_server import LLMServer, http_error, openai_chat, openai_response
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.instrument import agent_run, tool
from otel_agent_eval.instrument.auto.openai import OpenAIInstrumentor
from otel_agent_eval.model import AssistantMessage, ToolExecution, UserMessage

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "description": "Cancel a pending order.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "reason": {"enum": ["no longer needed", "ordered by mistake"]},
                },
                "required": ["order_id", "reason"],
            },
        },
    }
]


@tool
def cancel_order(order_id: str, reason: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "cancelled"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    yield exporter
    OpenAIInstrumentor().uninstrument()
    provider.shutdown()


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as s:
        yield s


def client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)


def agent(server: LLMServer, reason: str, *, stream: bool = False) -> str:
    """An agent loop written against the bare SDK, with no knowledge of any instrumentation."""
    server.script(
        openai_chat(tool_calls=[("call_1", "cancel_order", {"order_id": "#W1", "reason": reason})]),
        openai_chat("Your order #W1 is cancelled."),
    )
    messages: list[Any] = [
        {"role": "system", "content": "You are a shop assistant."},
        {"role": "user", "content": "Please cancel order #W1, I no longer need it."},
    ]
    with client(server) as c:
        while True:
            if stream:
                chunks = c.chat.completions.create(
                    model="gpt-test",
                    messages=messages,
                    tools=TOOLS,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                reply = _streamed(chunks)
            else:
                reply = c.chat.completions.create(model="gpt-test", messages=messages, tools=TOOLS).choices[0].message
                reply = reply.model_dump(exclude_none=True)  # the agent keeps plain dicts
            messages.append(reply)
            if not reply.get("tool_calls"):
                return str(reply["content"])
            for call in reply["tool_calls"]:
                result = cancel_order(**json.loads(call["function"]["arguments"]))
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})


def _streamed(stream: Any) -> dict[str, Any]:
    """What an agent does with a streamed answer: put the message back together as a dict."""
    content, calls = [], {}
    for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is None:
            continue
        content.append(delta.content or "")
        for part in delta.tool_calls or ():
            entry = calls.setdefault(
                part.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            entry["id"] = part.id or entry["id"]
            entry["function"]["name"] += part.function.name or ""
            entry["function"]["arguments"] += part.function.arguments or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_unmodified_agent_loop_is_one_trace(spans: InMemorySpanExporter, server: LLMServer, stream: bool) -> None:
    assert agent(server, "no longer needed", stream=stream) == "Your order #W1 is cancelled."
    names = by_name(spans)
    assert sorted(names) == ["chat gpt-test", "execute_tool cancel_order"] and len(names["chat gpt-test"]) == 2
    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1  # one agent loop, one trace
    first, second = sorted(names["chat gpt-test"], key=lambda s: s.start_time or 0)
    assert first.parent is None and second.parent is not None and second.parent.span_id == first.context.span_id
    [executed] = names["execute_tool cancel_order"]
    assert executed.attributes["gen_ai.tool.call.id"] == "call_1"
    attributes = first.attributes
    assert attributes["gen_ai.provider.name"] == "openai" and attributes["gen_ai.request.model"] == "gpt-test"
    assert attributes["gen_ai.usage.input_tokens"] == 10 and attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    inputs = json.loads(str(attributes["gen_ai.input.messages"]))
    assert [m["role"] for m in inputs] == ["system", "user"] and inputs[1]["parts"][0]["type"] == "text"
    [output] = json.loads(str(attributes["gen_ai.output.messages"]))
    assert output["parts"][0] == {
        "type": "tool_call",
        "id": "call_1",
        "name": "cancel_order",
        "arguments": {"order_id": "#W1", "reason": "no longer needed"},
    }
    assert "cancel_order" in str(attributes["gen_ai.tool.definitions"])
    assert "agent_eval.step.index" not in attributes  # the reader rebuilds the conversation from the prompts


def test_the_evaluator_reads_the_trace_and_labels_a_planted_failure(
    spans: InMemorySpanExporter, server: LLMServer
) -> None:
    agent(server, "no longer needed")
    [run] = runs_from_spans(spans.get_finished_spans())
    assert [type(s) for s in run.steps] == [UserMessage, AssistantMessage, ToolExecution, AssistantMessage]
    assert run.system_instructions == "You are a shop assistant." and run.tool_definitions[0].name == "cancel_order"
    assert Engine().evaluate(run).findings == ()
    spans.clear()
    agent(server, "because")  # a reason the tool does not take
    [run] = runs_from_spans(spans.get_finished_spans())
    evaluation = Engine().evaluate(run)
    assert ("wrong_arguments", 1) in {(f.mode, f.step) for f in evaluation.findings}


def test_separate_conversations_are_separate_traces(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(openai_chat("Hi!"), openai_chat("Hello again!"))
    with client(server) as c:
        for text in ("hi", "hello"):
            c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": text}])
    assert len({s.context.trace_id for s in spans.get_finished_spans()}) == 2


def test_inside_an_agent_run_calls_are_its_steps(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(openai_chat("Hi!"))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with agent_run("shop", tracer_provider=provider), client(server) as c:
        c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    names = by_name(spans)
    [root], [chat] = names["invoke_agent shop"], names["chat gpt-test"]
    assert chat.parent is not None and chat.parent.span_id == root.context.span_id


def test_responses_api_plain_streamed_and_continued(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(
        openai_response(function_calls=[("fc_1", "cancel_order", {"order_id": "#W1", "reason": "no longer needed"})]),
        openai_response("Cancelled."),
    )
    with client(server) as c:
        first = c.responses.create(
            model="gpt-test",
            instructions="Be brief.",
            input="Cancel #W1.",
            tools=[
                {"type": "function", "name": "cancel_order", "parameters": TOOLS[0]["function"]["parameters"]}  # type: ignore[index]
            ],
        )
        events = list(
            c.responses.create(
                model="gpt-test",
                previous_response_id=first.id,
                input=[{"type": "function_call_output", "call_id": "fc_1", "output": '{"status": "cancelled"}'}],
                stream=True,
            )
        )
    assert events[-1].type == "response.completed"
    chats = sorted(by_name(spans)["chat gpt-test"], key=lambda s: s.start_time or 0)
    assert len(chats) == 2 and chats[0].context.trace_id == chats[1].context.trace_id  # continued by response id
    [answer] = json.loads(str(chats[1].attributes["gen_ai.output.messages"]))
    assert answer["parts"] == [{"type": "text", "content": "Cancelled."}]
    [run] = runs_from_spans(spans.get_finished_spans())
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]


def test_async_client(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(openai_chat("Hi!"), openai_chat("Streamed hi!"))

    async def main() -> str:
        async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as c:
            await c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
            stream = await c.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    assert asyncio.run(main()) == "Streamed hi!"
    outputs = [json.loads(str(s.attributes["gen_ai.output.messages"])) for s in spans.get_finished_spans()]
    assert [o[0]["parts"][0]["content"] for o in outputs] == ["Hi!", "Streamed hi!"]


def test_errors_propagate_unchanged_and_mark_the_span(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(http_error(429, "Rate limit reached", retry_after=0.01))
    with client(server) as c, pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "RateLimitError"


def test_a_stream_closed_early_ends_its_span(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(openai_chat("one two three four five"))
    with client(server) as c:
        stream = c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert isinstance(stream, openai.Stream)  # the SDK's own type, passed through
        next(iter(stream))
        stream.close()
    [span] = spans.get_finished_spans()
    assert span.end_time is not None


def test_instrumentation_never_breaks_the_call(
    spans: InMemorySpanExporter, server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import otel_agent_eval.instrument.auto.openai as module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(module, "start_model_call", broken)
    server.script(openai_chat("Hi!"))
    with client(server) as c:
        reply = c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hi!" and spans.get_finished_spans() == ()


def test_uninstrument_restores_the_sdk(spans: InMemorySpanExporter, server: LLMServer) -> None:
    import wrapt
    from openai.resources.chat.completions import Completions
    from openai.resources.responses import Responses

    def patched() -> list[bool]:
        return [isinstance(cls.__dict__["create"], wrapt.FunctionWrapper) for cls in (Completions, Responses)]

    assert patched() == [True, True]
    OpenAIInstrumentor().uninstrument()
    try:
        assert patched() == [False, False]
        server.script(openai_chat("Hi!"))
        with client(server) as c:
            c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
        assert spans.get_finished_spans() == ()
    finally:
        OpenAIInstrumentor().instrument(tracer_provider=TracerProvider())  # the fixture uninstruments it again


def test_the_fast_prompt_reading_agrees_with_the_full_parser() -> None:
    """Every message of the real recorded runs, as an agent would send it: the same keys (conversations are
    followed by them) and, read back by the evaluator, the same messages."""
    from conftest import DATA, RECORDED_FILES

    from otel_agent_eval.ingest.messages import parse_genai_messages, parse_openai_message
    from otel_agent_eval.ingest.recorded import load_runs, load_tools
    from otel_agent_eval.instrument.auto.openai import chat_prompt
    from otel_agent_eval.instrument.conversation import Prompt

    def as_openai(step: Any) -> dict[str, Any]:
        if isinstance(step, AssistantMessage):
            out: dict[str, Any] = {"role": "assistant", "content": step.content}
            if step.tool_calls:
                out["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
                    for c in step.tool_calls
                ]
            return out
        if isinstance(step, ToolExecution):
            return {"role": "tool", "tool_call_id": step.call_id, "content": step.result or step.error or ""}
        return {"role": "user", "content": step.content}

    compared = 0
    for path in RECORDED_FILES:
        tools = load_tools(
            DATA / "tau-bench" / ("airline-tools.json" if "airline" in path.name else "retail-tools.json")
        )
        for run in load_runs(path, tools=tools):
            messages = [{"role": "system", "content": run.system_instructions}, *map(as_openai, run.steps)]
            fast = chat_prompt(messages)
            full = Prompt.of([parse_openai_message(m, field="m", strict=False) for m in messages])
            assert fast.keys == full.keys
            read_fast = [m for g in fast.messages for m in parse_genai_messages(g, field="f")]
            read_full = [m for g in full.messages for m in parse_genai_messages(g, field="f")]
            assert read_fast == read_full
            compared += len(messages)
    assert compared > 3000


def test_an_iterable_of_messages_is_sent_whole(spans: InMemorySpanExporter, server: LLMServer) -> None:
    """Reading a generator would use it up before the SDK sends it: it is left alone (the call is recorded
    without its prompt)."""
    server.script(openai_chat("Hi!"))
    with client(server) as c:
        c.chat.completions.create(model="gpt-test", messages=(m for m in [{"role": "user", "content": "hi"}]))
    assert server.requests[0].body["messages"] == [{"role": "user", "content": "hi"}]
    [span] = spans.get_finished_spans()
    assert json.loads(str(span.attributes["gen_ai.output.messages"]))[0]["parts"][0]["content"] == "Hi!"


def test_a_model_call_made_by_a_tool_does_not_split_the_loop(spans: InMemorySpanExporter, server: LLMServer) -> None:
    """A tool that calls the model itself (a summary): its call is a run of its own, in its own trace; the
    loop stays one run."""
    server.script(
        openai_chat(tool_calls=[("call_1", "summarise", {"text": "long text"})]),
        openai_chat("A summary."),  # the tool's own call
        openai_chat("Here is the summary."),
    )
    with client(server) as c:

        @tool
        def summarise(text: str) -> str:
            reply = c.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": f"Sum up: {text}"}]
            )
            return str(reply.choices[0].message.content)

        messages: list[Any] = [{"role": "user", "content": "Summarise this."}]
        reply = c.chat.completions.create(model="gpt-test", messages=messages).choices[0].message
        messages.append(reply.model_dump(exclude_none=True))
        call = reply.tool_calls[0]
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": summarise(**json.loads(call.function.arguments))}
        )
        c.chat.completions.create(model="gpt-test", messages=messages)
    runs = sorted(runs_from_spans(spans.get_finished_spans()), key=lambda r: len(r.steps))
    assert [[s.kind for s in r.steps] for r in runs] == [
        ["user", "assistant"],
        ["user", "assistant", "tool", "assistant"],
    ]
    assert runs[0].trace_id != runs[1].trace_id


def test_a_refusal_keeps_the_conversation_together(spans: InMemorySpanExporter, server: LLMServer) -> None:
    from llm_server import json_reply

    said = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    refusal = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "stop", "message": said}],
    }
    server.script(json_reply(refusal), openai_chat("OK."))
    with client(server) as c:
        messages: list[Any] = [{"role": "user", "content": "Do the bad thing."}]
        reply = c.chat.completions.create(model="gpt-test", messages=messages).choices[0].message
        messages += [reply.model_dump(exclude_none=True), {"role": "user", "content": "Fine, something else."}]
        c.chat.completions.create(model="gpt-test", messages=messages)
    assert len({s.context.trace_id for s in spans.get_finished_spans()}) == 1


def test_streams_end_their_span_at_the_last_chunk(spans: InMemorySpanExporter, server: LLMServer) -> None:
    """The SDK's stream() helper leaves the raw stream without closing our proxy; a raw response is not a stream
    we can read: both end their span (the second without an answer)."""
    server.script(openai_chat("one two"), openai_chat("three"))
    with client(server) as c:
        with c.chat.completions.stream(model="gpt-test", messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream:
                pass
        assert len(spans.get_finished_spans()) == 1  # ended at the last chunk, not at garbage collection
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        list(raw.parse())
    first, second = spans.get_finished_spans()
    assert json.loads(str(first.attributes["gen_ai.output.messages"]))[0]["parts"][0]["content"] == "one two"
    assert "gen_ai.output.messages" not in (second.attributes or {})


def test_instrument_from_the_top_level_package() -> None:
    import subprocess
    import sys

    code = "import otel_agent_eval; print(otel_agent_eval.instrument())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['openai', 'anthropic', 'langchain']"
