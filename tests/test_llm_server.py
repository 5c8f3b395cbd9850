"""The fake LLM server against the real openai and anthropic SDKs: every reply parses, streams accumulate."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from llm_server import (
    CHAT_COMPLETIONS,
    RESPONSES,
    LLMServer,
    RecordedRequest,
    Wire,
    anthropic_message,
    broken_stream,
    fragments,
    http_error,
    json_reply,
    openai_chat,
    openai_response,
    words,
)
from llm_server import MESSAGES as MESSAGES_PATH
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

ARGS = '{"city": "Paris", "unit": "celsius"}'
CHAT_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
RESPONSE_TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
]
ANTHROPIC_TOOLS: Any = [
    {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
]
MESSAGES: Any = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


@pytest.fixture
def oai(server: LLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(server: LLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0) as client:
        yield client


# ------------------------------------------------------------------------------------------- the server


def test_base_urls_and_clean_stop() -> None:
    with LLMServer() as server:
        port = server.port
        assert server.openai_base_url == f"http://127.0.0.1:{port}/v1"
        assert server.anthropic_base_url == f"http://127.0.0.1:{port}"
        thread = server._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_stop_with_a_client_connection_still_open() -> None:
    """A client's pooled keep-alive connection does not hold the server up."""
    with LLMServer() as server:
        server.script(openai_chat("kept alive"))
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        thread = server._thread
    assert thread is not None and not thread.is_alive()
    client.close()


def test_splitting_helpers_keep_the_text() -> None:
    for text in ["", "one", "  two  words ", "a\nb\n", "ünïcode ✓ text"]:
        assert "".join(words(text)) == text
        assert "".join(fragments(text)) == text
    assert len(words("It is sunny in Paris.")) == 5


# ---------------------------------------------------------------------------------- chat completions


def test_openai_chat_with_tool_calls(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(
        openai_chat(
            "Let me look.",
            [("call_1", "get_weather", ARGS), ("call_2", "get_weather", {"city": "Lyon"})],
            usage=(42, 7),
        )
    )
    completion = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=CHAT_TOOLS)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-test"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Let me look."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type) for c in calls] == [("call_1", "function"), ("call_2", "function")]
    assert [c.function.name for c in calls if c.type == "function"] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls if c.type == "function"] == [
        json.loads(ARGS),
        {"city": "Lyon"},
    ]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        42,
        7,
        49,
    )
    assert completion._request_id is not None

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test"
    assert request.body["model"] == "gpt-4o"
    assert request.body["messages"] == MESSAGES
    assert request.body["tools"] == CHAT_TOOLS
    assert not request.stream


def test_openai_chat_plain_text_finishes_with_stop(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(openai_chat("It is sunny."))
    completion = oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None


def test_openai_chat_streaming(server: LLMServer, oai: openai.OpenAI) -> None:
    reply = openai_chat("Checking the weather now.", [("call_1", "get_weather", ARGS)], usage=(30, 12))
    server.script(reply)
    stream = oai.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        tools=CHAT_TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content_deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_deltas) > 1
    assert "".join(content_deltas) == "Checking the weather now."

    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert calls == {0: {"id": "call_1", "name": "get_weather", "arguments": ARGS}}
    argument_deltas = [
        d
        for c in chunks
        if c.choices
        for d in c.choices[0].delta.tool_calls or []
        if d.function and d.function.arguments
    ]
    assert len(argument_deltas) > 1

    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (30, 12, 42)

    (request,) = server.requests
    assert request.stream
    assert request.body["stream_options"] == {"include_usage": True}


def test_openai_chat_same_reply_streams_only_when_asked(server: LLMServer, oai: openai.OpenAI) -> None:
    reply = openai_chat("Same reply, both ways.")
    server.script(reply, reply)
    stream = oai.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)  # no usage chunk: include_usage was not asked
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Same reply, both ways."
    assert chunks[-1].choices[0].finish_reason == "stop"
    completion = oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert completion.choices[0].message.content == "Same reply, both ways."


def test_openai_chat_stream_helper(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(openai_chat("Sure.", [("call_9", "get_weather", ARGS)]))
    with oai.chat.completions.stream(model="gpt-test", messages=MESSAGES, tools=CHAT_TOOLS) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Sure."
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.arguments == ARGS
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_async_client(server: LLMServer) -> None:
    server.script(
        openai_chat("Async hello.", [("call_a", "get_weather", ARGS)]),
        openai_chat("Async stream."),
    )

    async def main() -> tuple[openai.types.chat.ChatCompletion, str]:
        async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as client:
            completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, tools=CHAT_TOOLS)
            stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
            return completion, text

    completion, text = asyncio.run(main())
    assert completion.choices[0].message.content == "Async hello."
    calls = completion.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls if c.type == "function"] == [json.loads(ARGS)]
    assert text == "Async stream."
    assert [r.stream for r in server.requests] == [False, True]


# ------------------------------------------------------------------------------------------ responses API


def test_openai_responses(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(openai_response("Let me check.", [("call_1", "get_weather", ARGS)], usage=(20, 9)))
    response = oai.responses.create(
        model="gpt-test", input="Weather in Paris?", tools=RESPONSE_TOOLS, instructions="Be brief."
    )

    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Let me check."
    message, call = response.output
    assert message.type == "message"
    assert call.type == "function_call"
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_1", "get_weather", json.loads(ARGS))
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (20, 9, 29)
    assert response.instructions == "Be brief."
    assert [tool.type for tool in response.tools] == ["function"]

    (request,) = server.requests
    assert request.path == "/v1/responses"
    assert request.body["input"] == "Weather in Paris?"


def test_openai_responses_streaming(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(openai_response("It is sunny in Paris.", [("call_1", "get_weather", ARGS)]))
    events = list(oai.responses.create(model="gpt-test", input="Weather?", tools=RESPONSE_TOOLS, stream=True))

    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 2
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert kinds.count("response.output_text.delta") > 1
    assert text == "It is sunny in Paris."
    arguments = "".join(event.delta for event in events if event.type == "response.function_call_arguments.delta")
    assert arguments == ARGS

    completed = events[-1]
    assert completed.type == "response.completed"
    final = completed.response
    assert final.output_text == "It is sunny in Paris."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [("call_1", "get_weather", ARGS)]
    assert final.usage is not None


def test_openai_responses_stream_helper(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(openai_response("Done.", [("call_7", "get_weather", ARGS)]))
    with oai.responses.stream(model="gpt-test", input="Weather?", tools=RESPONSE_TOOLS) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Done."
    assert final.output_text == "Done."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [("call_7", ARGS)]


# -------------------------------------------------------------------------------------- anthropic messages


def test_anthropic_messages_with_tool_use(server: LLMServer, claude: anthropic.Anthropic) -> None:
    server.script(
        anthropic_message("I'll check.", [("toolu_1", "get_weather", {"city": "Paris"})], usage=(15, 8)),
    )
    message = claude.messages.create(model="claude-x", max_tokens=100, messages=MESSAGES, tools=ANTHROPIC_TOOLS)

    assert message.type == "message"
    assert message.model == "claude-test"
    assert message.stop_reason == "tool_use"
    text, tool_use = message.content
    assert text.type == "text"
    assert text.text == "I'll check."
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == ("toolu_1", "get_weather", {"city": "Paris"})
    assert (message.usage.input_tokens, message.usage.output_tokens) == (15, 8)
    assert message._request_id is not None

    (request,) = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "test"
    assert "anthropic-version" in request.headers
    assert request.body["max_tokens"] == 100
    assert request.body["tools"] == ANTHROPIC_TOOLS


def test_anthropic_plain_text_ends_turn(server: LLMServer, claude: anthropic.Anthropic) -> None:
    server.script(anthropic_message("Hi."))
    message = claude.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]


def test_anthropic_streaming_events(server: LLMServer, claude: anthropic.Anthropic) -> None:
    server.script(anthropic_message("Looking it up now.", [("toolu_1", "get_weather", {"city": "Paris"})]))
    events = list(
        claude.messages.create(model="claude-x", max_tokens=100, messages=MESSAGES, tools=ANTHROPIC_TOOLS, stream=True)
    )

    kinds = [event.type for event in events]  # the SDK drops the ping
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    text = ""
    partial_json = ""
    for event in events:
        if event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                text += event.delta.text
            elif event.delta.type == "input_json_delta":
                partial_json += event.delta.partial_json
    assert text == "Looking it up now."
    assert json.loads(partial_json) == {"city": "Paris"}
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "tool_use"
    assert delta.usage.output_tokens == 5


def test_anthropic_stream_helper(server: LLMServer, claude: anthropic.Anthropic) -> None:
    server.script(anthropic_message("Sunny, 21 degrees.", [("toolu_2", "get_weather", {"city": "Paris"})]))
    with claude.messages.stream(model="claude-x", max_tokens=100, messages=MESSAGES, tools=ANTHROPIC_TOOLS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Sunny, 21 degrees."
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "text"
    assert final.content[0].text == "Sunny, 21 degrees."
    tool_use = final.content[1]
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.input) == ("toolu_2", {"city": "Paris"})
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 5)


# ------------------------------------------------------------------------------------------------- errors


def test_rate_limit_errors(server: LLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    server.script(http_error(429, "Slow down.", retry_after=3), http_error(429, "Slow down too.", retry_after=3))

    with pytest.raises(openai.RateLimitError) as openai_error:
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert openai_error.value.status_code == 429
    assert openai_error.value.body == {
        "message": "Slow down.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert openai_error.value.code == "rate_limit_exceeded"
    assert openai_error.value.response.headers["retry-after"] == "3"

    with pytest.raises(anthropic.RateLimitError) as anthropic_error:
        claude.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)
    assert anthropic_error.value.status_code == 429
    body = anthropic_error.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"] == {"type": "rate_limit_error", "message": "Slow down too."}
    assert anthropic_error.value.response.headers["retry-after"] == "3"
    assert len(server.requests) == 2


def test_retry_after_is_honoured_by_the_sdks(server: LLMServer) -> None:
    server.script(
        http_error(429, "Wait a bit.", retry_after=0.01),
        openai_chat("After the retry."),
        http_error(529, "Overloaded.", retry_after=0.01),
        anthropic_message("After the retry."),
    )
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=1) as oai:
        completion = oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=1) as claude:
        message = claude.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)
    assert completion.choices[0].message.content == "After the retry."
    assert message.content[0].type == "text"
    assert len(server.requests) == 4
    assert server.pending == 0


def test_empty_script_answers_500_without_retries(server: LLMServer) -> None:
    # default max_retries (2): the 500 carries x-should-retry: false, so each SDK asks once
    oai = openai.OpenAI(base_url=server.openai_base_url, api_key="test")
    claude = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test")
    with oai, pytest.raises(openai.InternalServerError, match="script ran out"):
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    with claude, pytest.raises(anthropic.InternalServerError, match="script ran out") as error:
        claude.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)
    body = error.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/v1/messages"]


def test_unknown_route_is_404_and_keeps_the_script(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(openai_chat("still here"))
    with pytest.raises(openai.NotFoundError, match="no route"):
        oai.models.list()
    assert server.pending == 1
    assert server.requests[0].method == "GET"
    assert server.requests[0].path == "/v1/models"


def test_reply_for_another_endpoint_is_a_clear_500(server: LLMServer, claude: anthropic.Anthropic) -> None:
    server.script(openai_chat("wrong provider"))
    with pytest.raises(anthropic.InternalServerError, match="OpenAIChat answers /v1/chat/completions"):
        claude.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)


def test_json_reply_any_shape(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(json_reply({"error": {"message": "teapot", "type": "odd", "code": None}}, status=418))
    with pytest.raises(openai.APIStatusError, match="teapot") as error:
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert error.value.status_code == 418


def test_broken_streams(server: LLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    server.script(
        broken_stream(openai_chat("This answer is cut off halfway through."), after=3),
        broken_stream(anthropic_message("Also cut off."), after=4),
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "This answer"  # role delta, then two words

    kinds: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):  # anthropic does not wrap errors raised while streaming
        for event in claude.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES, stream=True):
            kinds.append(event.type)
    assert kinds == ["message_start", "content_block_start", "content_block_delta"]  # the ping was the 3rd


def test_script_rejects_what_is_not_a_reply(server: LLMServer) -> None:
    with pytest.raises(TypeError, match="not a scripted reply"):
        server.script({"choices": []})  # type: ignore[arg-type]


# ------------------------------------------------------------------------ strict checks of the wire format


def _request(path: str, stream: bool) -> RecordedRequest:
    body: dict[str, Any] = {"model": "m", "stream": stream, "stream_options": {"include_usage": True}}
    return RecordedRequest("POST", path, "", {}, body, json.dumps(body).encode())


def _event_data(wire: Wire) -> list[Any]:
    assert wire.events is not None
    data = [event.split(b"data: ", 1)[1].strip() for event in wire.events]
    return [json.loads(d) for d in data if d != b"[DONE]"]


def test_wire_formats_validate_strictly_against_the_sdk_types() -> None:
    """The SDKs build their models without validation; here every payload must pass pydantic validation."""
    chat = openai_chat("Some text here.", [("call_1", "f", ARGS)])
    ChatCompletion.model_validate_json(chat.render(_request(CHAT_COMPLETIONS, False)).body)
    for chunk in _event_data(chat.render(_request(CHAT_COMPLETIONS, True))):
        ChatCompletionChunk.model_validate(chunk)

    response = openai_response("Some text here.", [("call_1", "f", ARGS)])
    Response.model_validate_json(response.render(_request(RESPONSES, False)).body)
    response_events = pydantic.TypeAdapter(ResponseStreamEvent)
    for event in _event_data(response.render(_request(RESPONSES, True))):
        response_events.validate_python(event)

    message = anthropic_message("Some text here.", [("toolu_1", "f", {"city": "Paris"})])
    Message.model_validate_json(message.render(_request(MESSAGES_PATH, False)).body)
    message_events = pydantic.TypeAdapter(RawMessageStreamEvent)
    for event in _event_data(message.render(_request(MESSAGES_PATH, True))):
        if event["type"] != "ping":
            message_events.validate_python(event)


def test_broken_stream_keeps_the_endpoint_check(server: LLMServer, oai: openai.OpenAI) -> None:
    server.script(broken_stream(anthropic_message("wrong provider"), after=1))
    with pytest.raises(openai.InternalServerError, match="BrokenStream answers /v1/messages"):
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
