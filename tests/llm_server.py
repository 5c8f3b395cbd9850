"""A local HTTP server that speaks the OpenAI and Anthropic APIs on the wire, for tests of the real SDKs.

Script the replies, point a real ``openai`` / ``anthropic`` client at ``openai_base_url`` /
``anthropic_base_url``, then assert on ``server.requests``. Each scripted reply is consumed by the
next request, whatever its endpoint; a reply is sent as JSON or as a server-sent-event stream as the
request asked (``"stream": true``), unless the builder was told ``stream=True`` / ``stream=False``.

>>> import openai
>>> with LLMServer() as server:
...     server.script(openai_chat("Hello!"))
...     with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as client:
...         reply = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
...     print(reply.choices[0].message.content, server.requests[0].path, server.requests[0].body["model"])
Hello! /v1/chat/completions gpt-test

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/messages``; anything else is
answered 404 (without consuming a reply). A request that finds the script empty, or a reply built for
another endpoint, is answered 500 with ``x-should-retry: false`` (so the SDKs do not retry) and an error
message saying so, in the error shape of the endpoint's provider.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

CHAT_COMPLETIONS = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
ROUTES = (CHAT_COMPLETIONS, RESPONSES, MESSAGES)

# (id, name, arguments): arguments as a JSON string (sent verbatim) or a mapping (JSON-encoded).
ToolCall = tuple[str, str, str | Mapping[str, Any]]
# (id, name, input) of an Anthropic ``tool_use`` block.
ToolUse = tuple[str, str, Mapping[str, Any]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received (recorded before it was answered)."""

    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the parsed JSON body, None when there is none or it is not JSON
    raw_body: bytes

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streamed answer (``"stream": true`` in its body)."""
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def is_anthropic(self) -> bool:
        return self.path.startswith(MESSAGES)


@dataclass
class Wire:
    """What goes back on the wire: a JSON body, or SSE events sent chunked (cut after ``cut_after`` events)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[bytes] | None = None
    cut_after: int | None = None
    delay: float = 0.0  # seconds before the answer goes out (a slow model, a timeout to provoke)


class Reply(abc.ABC):
    """A scripted reply, rendered for the request that consumes it."""

    endpoint: ClassVar[str | None] = None  # the path it answers; None: any

    def answers(self) -> str | None:
        """The path this reply answers (None: any)."""
        return self.endpoint

    def accepts(self, path: str) -> bool:
        return self.answers() in (None, path)

    @abc.abstractmethod
    def render(self, request: RecordedRequest) -> Wire: ...


# ----------------------------------------------------------------------------------------------- helpers


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _json_wire(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Wire:
    return Wire(status, {"content-type": "application/json", **(headers or {})}, _dumps(payload))


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event is not None else b""
    return head + b"data: " + (data if isinstance(data, bytes) else _dumps(data)) + b"\n\n"


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def words(text: str) -> list[str]:
    """How text is split into stream deltas: word by word, each word with the whitespace before it.

    >>> words("Hello, sunny world! ")
    ['Hello,', ' sunny', ' world!', ' ']
    """
    return re.findall(r"\s*\S+|\s+$", text)


def fragments(text: str, size: int = 6) -> list[str]:
    """How JSON arguments are split into stream deltas: pieces of ``size`` characters.

    >>> fragments('{"city": "Paris"}')
    ['{"city', '": "Pa', 'ris"}']
    """
    return [text[i : i + size] for i in range(0, len(text), size)]


def _arguments(arguments: str | Mapping[str, Any]) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(dict(arguments))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _wants_stream(forced: bool | None, request: RecordedRequest) -> bool:
    return request.stream if forced is None else forced


# ---------------------------------------------------------------------------------- OpenAI chat completions


@dataclass(frozen=True)
class OpenAIChat(Reply):
    """A chat completion (see :func:`openai_chat`)."""

    endpoint: ClassVar[str | None] = CHAT_COMPLETIONS

    content: str | None = None
    tool_calls: tuple[tuple[str, str, str], ...] = ()
    finish_reason: str | None = None
    model: str = "gpt-test"
    usage: tuple[int, int] = (10, 5)
    stream: bool | None = None
    id: str | None = None

    @property
    def resolved_finish_reason(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def usage_json(self) -> dict[str, Any]:
        prompt, completion = self.usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def render(self, request: RecordedRequest) -> Wire:
        completion_id = self.id or _new_id("chatcmpl-")
        created = int(time.time())
        common = {
            "id": completion_id,
            "created": created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_llmserver",
        }
        if not _wants_stream(self.stream, request):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": self.content,
                "refusal": None,
                "annotations": [],
            }
            if self.tool_calls:
                message["tool_calls"] = [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                    for call_id, name, arguments in self.tool_calls
                ]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.resolved_finish_reason}
            return _json_wire({**common, "object": "chat.completion", "choices": [choice], "usage": self.usage_json()})

        body = request.body if isinstance(request.body, dict) else {}
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        events: list[bytes] = []

        def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
            payload: dict[str, Any] = {**common, "object": "chat.completion.chunk", "choices": choices}
            if include_usage:
                payload["usage"] = usage
            events.append(_sse(payload))

        def delta(d: dict[str, Any], finish_reason: str | None = None) -> None:
            chunk([{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish_reason}])

        delta({"role": "assistant", "content": None if self.content is None else "", "refusal": None})
        for piece in words(self.content or ""):
            delta({"content": piece})
        for index, (call_id, name, arguments) in enumerate(self.tool_calls):
            delta(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            for piece in fragments(arguments):
                delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        delta({}, self.resolved_finish_reason)
        if include_usage:
            chunk([], self.usage_json())
        events.append(_sse(b"[DONE]"))
        return Wire(events=events)


def openai_chat(
    content: str | None = None,
    tool_calls: Iterable[ToolCall] = (),
    *,
    finish_reason: str | None = None,
    model: str = "gpt-test",
    usage: tuple[int, int] = (10, 5),
    stream: bool | None = None,
    id: str | None = None,
) -> OpenAIChat:
    """A ``POST /v1/chat/completions`` answer, one choice, from the assistant.

    Not streamed: a ``chat.completion`` object whose message has ``content`` and, when given,
    ``tool_calls`` (``{"id", "type": "function", "function": {"name", "arguments"}}``); ``finish_reason``
    defaults to ``"tool_calls"`` when there are tool calls, else ``"stop"``; ``usage`` is
    ``(prompt_tokens, completion_tokens)``.

    Streamed (the request had ``"stream": true``, or ``stream=True``): ``data: {chat.completion.chunk}``
    SSE lines: a role delta, the content word by word, for each tool call a delta with its ``index``,
    ``id``, ``type`` and ``name`` (empty ``arguments``) then the arguments in fragments by ``index``, a
    last choice delta with the ``finish_reason``; when the request set ``stream_options.include_usage``
    every chunk carries ``"usage": null`` and one more chunk with no choices carries the usage; then
    ``data: [DONE]``.
    """
    calls = tuple((call_id, name, _arguments(arguments)) for call_id, name, arguments in tool_calls)
    return OpenAIChat(content, calls, finish_reason, model, usage, stream, id)


# -------------------------------------------------------------------------------- OpenAI Responses API


@dataclass(frozen=True)
class OpenAIResponse(Reply):
    """A Responses API answer (see :func:`openai_response`)."""

    endpoint: ClassVar[str | None] = RESPONSES

    text: str | None = None
    function_calls: tuple[tuple[str, str, str], ...] = ()
    model: str = "gpt-test"
    usage: tuple[int, int] = (10, 5)
    stream: bool | None = None
    id: str | None = None

    def usage_json(self) -> dict[str, Any]:
        prompt, completion = self.usage
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }

    def output_items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if self.text is not None:
            part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
            items.append(
                {
                    "id": _new_id("msg_"),
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [part],
                }
            )
        for call_id, name, arguments in self.function_calls:
            items.append(
                {
                    "id": _new_id("fc_"),
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments,
                }
            )
        return items

    def response_json(
        self, request: RecordedRequest, response_id: str, created: int, output: list[dict[str, Any]], done: bool
    ) -> dict[str, Any]:
        body = request.body if isinstance(request.body, dict) else {}
        return {
            "id": response_id,
            "object": "response",
            "created_at": created,
            "status": "completed" if done else "in_progress",
            "completed_at": created if done else None,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text", {"format": {"type": "text"}, "verbosity": "medium"}),
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": self.usage_json() if done else None,
            "user": None,
            "metadata": body.get("metadata", {}),
        }

    def render(self, request: RecordedRequest) -> Wire:
        response_id = self.id or _new_id("resp_")
        created = int(time.time())
        items = self.output_items()
        final = self.response_json(request, response_id, created, items, done=True)
        if not _wants_stream(self.stream, request):
            return _json_wire(final)

        events: list[bytes] = []
        sequence = itertools.count()

        def emit(kind: str, **fields: Any) -> None:
            events.append(_sse({"type": kind, **fields, "sequence_number": next(sequence)}, event=kind))

        started = self.response_json(request, response_id, created, [], done=False)
        emit("response.created", response=started)
        emit("response.in_progress", response=started)
        for index, item in enumerate(items):
            at = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                part = item["content"][0]
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "content": []},
                )
                emit("response.content_part.added", **at, content_index=0, part={**part, "text": ""})
                for piece in words(part["text"]):
                    emit("response.output_text.delta", **at, content_index=0, delta=piece, logprobs=[])
                emit("response.output_text.done", **at, content_index=0, text=part["text"], logprobs=[])
                emit("response.content_part.done", **at, content_index=0, part=part)
            else:
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
                for piece in fragments(item["arguments"]):
                    emit("response.function_call_arguments.delta", **at, delta=piece)
                emit("response.function_call_arguments.done", **at, arguments=item["arguments"])
            emit("response.output_item.done", output_index=index, item=item)
        emit("response.completed", response=final)
        return Wire(events=events)


def openai_response(
    text: str | None = None,
    function_calls: Iterable[ToolCall] = (),
    *,
    model: str = "gpt-test",
    usage: tuple[int, int] = (10, 5),
    stream: bool | None = None,
    id: str | None = None,
) -> OpenAIResponse:
    """A ``POST /v1/responses`` answer.

    Not streamed: a ``response`` object (``status: "completed"``) whose ``output`` has a ``message`` item
    with one ``output_text`` part when ``text`` is given, then one ``function_call`` item
    (``call_id``, ``name``, ``arguments``) per function call; ``usage`` is ``(input_tokens,
    output_tokens)``; ``instructions``, ``tools``, ``temperature``... are echoed from the request.

    Streamed (the request had ``"stream": true``, or ``stream=True``): ``event:``/``data:`` SSE events
    with ``sequence_number`` from 0: ``response.created``, ``response.in_progress`` (status
    ``in_progress``, no output), then per item ``response.output_item.added``, for a message
    ``response.content_part.added`` / ``response.output_text.delta`` (word by word) /
    ``response.output_text.done`` / ``response.content_part.done``, for a function call
    ``response.function_call_arguments.delta`` (fragments) / ``...done``, then
    ``response.output_item.done``; last ``response.completed`` with the full response. No ``[DONE]``.
    """
    calls = tuple((call_id, name, _arguments(arguments)) for call_id, name, arguments in function_calls)
    return OpenAIResponse(text, calls, model, usage, stream, id)


# --------------------------------------------------------------------------------- Anthropic messages


@dataclass(frozen=True)
class AnthropicMessage(Reply):
    """A Messages API answer (see :func:`anthropic_message`)."""

    endpoint: ClassVar[str | None] = MESSAGES

    text: str | None = None
    tool_uses: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    stop_reason: str | None = None
    model: str = "claude-test"
    usage: tuple[int, int] = (10, 5)
    stream: bool | None = None
    id: str | None = None

    @property
    def resolved_stop_reason(self) -> str:
        return self.stop_reason or ("tool_use" if self.tool_uses else "end_turn")

    def content_blocks(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.text is not None:
            blocks.append({"type": "text", "text": self.text})
        for tool_id, name, tool_input in self.tool_uses:
            blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        return blocks

    def message_json(self, message_id: str, content: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        input_tokens, output_tokens = self.usage
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.resolved_stop_reason if done else None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": output_tokens if done else 1,
                "service_tier": "standard",
            },
        }

    def render(self, request: RecordedRequest) -> Wire:
        message_id = self.id or _new_id("msg_")
        blocks = self.content_blocks()
        if not _wants_stream(self.stream, request):
            return _json_wire(self.message_json(message_id, blocks, done=True))

        events: list[bytes] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append(_sse({"type": kind, **fields}, event=kind))

        emit("message_start", message=self.message_json(message_id, [], done=False))
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
                if index == 0:
                    emit("ping")
                for piece in words(block["text"]):
                    emit("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
            else:
                emit("content_block_start", index=index, content_block={**block, "input": {}})
                if index == 0:
                    emit("ping")
                for piece in ["", *fragments(json.dumps(block["input"]))]:
                    emit("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": piece})
            emit("content_block_stop", index=index)
        emit(
            "message_delta",
            delta={"stop_reason": self.resolved_stop_reason, "stop_sequence": None},
            usage={"output_tokens": self.usage[1]},
        )
        emit("message_stop")
        return Wire(events=events)


def anthropic_message(
    text: str | None = None,
    tool_uses: Iterable[ToolUse] = (),
    *,
    stop_reason: str | None = None,
    model: str = "claude-test",
    usage: tuple[int, int] = (10, 5),
    stream: bool | None = None,
    id: str | None = None,
) -> AnthropicMessage:
    """A ``POST /v1/messages`` answer.

    Not streamed: a ``message`` object whose ``content`` is a ``text`` block when ``text`` is given, then
    one ``tool_use`` block (``id``, ``name``, ``input``) per tool use; ``stop_reason`` defaults to
    ``"tool_use"`` when there are tool uses, else ``"end_turn"``; ``usage`` is ``(input_tokens,
    output_tokens)``.

    Streamed (the request had ``"stream": true``, or ``stream=True``): ``event:``/``data:`` SSE events:
    ``message_start`` (empty content, no stop reason, ``output_tokens: 1``), per block
    ``content_block_start`` (a ``ping`` after the first one, as the API does),
    ``content_block_delta`` (``text_delta`` word by word, or ``input_json_delta``: an empty
    ``partial_json`` then fragments of the JSON input), ``content_block_stop``; then ``message_delta``
    (``stop_reason``, ``usage.output_tokens``) and ``message_stop``.
    """
    uses = tuple((tool_id, name, dict(tool_input)) for tool_id, name, tool_input in tool_uses)
    return AnthropicMessage(text, uses, stop_reason, model, usage, stream, id)


# ------------------------------------------------------------------------------------------------- errors

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_json(
    anthropic: bool, status: int, message: str, error_type: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The error body of a provider: OpenAI's ``{"error": {...}}`` or Anthropic's ``{"type": "error", ...}``.

    >>> error_json(False, 429, "slow down")
    {'error': {'message': 'slow down', 'type': 'requests', 'param': None, 'code': 'rate_limit_exceeded'}}
    >>> error_json(True, 429, "slow down")["error"]
    {'type': 'rate_limit_error', 'message': 'slow down'}
    """
    if anthropic:
        kind = error_type or _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": _new_id("req_")}
    default_type, default_code = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {
        "error": {"message": message, "type": error_type or default_type, "param": None, "code": code or default_code}
    }


@dataclass(frozen=True)
class HttpError(Reply):
    """An error answer, in the error shape of the provider of the endpoint it answers (see :func:`http_error`)."""

    status: int
    message: str
    retry_after: float | None = None
    error_type: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def render(self, request: RecordedRequest) -> Wire:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["retry-after"] = _number(self.retry_after)
        payload = error_json(request.is_anthropic, self.status, self.message, self.error_type, self.code)
        return _json_wire(payload, self.status, headers)


def http_error(
    status: int,
    message: str,
    retry_after: float | None = None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpError:
    """An HTTP error answer to any endpoint.

    For ``/v1/messages`` the body is Anthropic's ``{"type": "error", "error": {"type", "message"},
    "request_id"}`` (``error.type`` from the status: ``rate_limit_error`` for 429, ``overloaded_error``
    for 529, ``api_error`` for 500...); for the OpenAI endpoints ``{"error": {"message", "type", "param",
    "code"}}`` (429: type ``requests``, code ``rate_limit_exceeded``; 5xx: ``server_error``).
    ``error_type`` / ``code`` override those. ``retry_after`` (seconds, may be fractional: both SDKs
    accept that) is sent as a ``retry-after`` header; ``headers`` are added as given (e.g.
    ``{"x-should-retry": "false"}``).
    """
    return HttpError(status, message, retry_after, error_type, code, tuple((headers or {}).items()))


# ------------------------------------------------------------------------------------------ other replies


@dataclass(frozen=True)
class JsonReply(Reply):
    """Any JSON body with any status, to any endpoint (see :func:`json_reply`)."""

    payload: Any
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()

    def render(self, request: RecordedRequest) -> Wire:
        return _json_wire(self.payload, self.status, dict(self.headers))


def json_reply(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JsonReply:
    """Exactly this JSON body (an escape hatch for shapes the builders do not make)."""
    return JsonReply(payload, status, tuple((headers or {}).items()))


StreamingReply = OpenAIChat | OpenAIResponse | AnthropicMessage


@dataclass(frozen=True)
class BrokenStream(Reply):
    """A streamed reply whose connection is closed after some events (see :func:`broken_stream`)."""

    reply: StreamingReply
    after: int

    def answers(self) -> str | None:
        return self.reply.answers()

    def render(self, request: RecordedRequest) -> Wire:
        wire = dataclasses.replace(self.reply, stream=True).render(request)
        wire.cut_after = self.after
        return wire


def broken_stream(reply: StreamingReply, after: int) -> BrokenStream:
    """``reply`` streamed (whatever the request asked), the connection closed after ``after`` SSE events.

    Events count as sent on the wire, Anthropic's ``ping`` and OpenAI's ``[DONE]`` included. The chunked
    body is never terminated, so the SDKs' HTTP client sees an incomplete read while iterating: ``openai``
    raises ``openai.APIConnectionError``, ``anthropic`` (1.17) lets ``httpx2.RemoteProtocolError`` through.
    """
    return BrokenStream(reply, after)


@dataclass(frozen=True)
class Delayed(Reply):
    """A reply sent ``seconds`` late (see :func:`delayed`)."""

    reply: Reply
    seconds: float

    def answers(self) -> str | None:
        return self.reply.answers()

    def render(self, request: RecordedRequest) -> Wire:
        wire = self.reply.render(request)
        wire.delay = self.seconds
        return wire


def delayed(reply: Reply, seconds: float) -> Delayed:
    """``reply``, sent ``seconds`` after the request came (the request is recorded at once)."""
    return Delayed(reply, seconds)


# ------------------------------------------------------------------------------------------------ server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, llm: LLMServer) -> None:
        self.llm = llm
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked SSE bodies whose truncation the client notices
    server_version = "LLMServer/1.0"
    timeout = 60  # an idle keep-alive connection is dropped after this long

    @property
    def llm(self) -> LLMServer:
        server = self.server
        assert isinstance(server, _HTTPServer)
        return server.llm

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate small writes: without this, Nagle's algorithm and the client's
        # delayed ACK hold each response back about 40 ms (benchmarks time calls against this server).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.llm._connection_opened(self.connection)

    def finish(self) -> None:
        self.llm._connection_closed(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = RecordedRequest(self.command, url.path, url.query, headers, body, raw)
        self._send(self.llm._answer(request))

    def _send(self, wire: Wire) -> None:
        if wire.delay:
            time.sleep(wire.delay)
        self.send_response(wire.status)
        for name, value in wire.headers.items():
            self.send_header(name, value)
        if wire.events is None:
            self.send_header("content-length", str(len(wire.body)))
            self.end_headers()
            self.wfile.write(wire.body)
            return
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if wire.cut_after is None:
            # One write for the whole stream (still one chunk per event): a write per event costs a wake-up of
            # the client per event and makes streamed calls' timing depend on scheduling, not on the client.
            body = b"".join(b"%X\r\n%s\r\n" % (len(event), event) for event in wire.events)
            self.wfile.write(body + b"0\r\n\r\n")
            return
        for index, event in enumerate(wire.events):
            if index >= wire.cut_after:
                self.close_connection = True  # no terminating chunk: the body is incomplete
                return
            self.wfile.write(b"%X\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class LLMServer:
    """The server, on 127.0.0.1 at a free port, serving from a daemon thread while the context is open.

    ``script(*replies)`` queues replies; ``requests`` lists what was received, in order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> LLMServer:
        if self._httpd is not None:
            raise RuntimeError("LLMServer already started")
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="LLMServer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # end the keep-alive connections the clients' pools hold
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LLMServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` of ``openai.OpenAI`` (it appends ``/chat/completions``)."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the ``base_url`` of ``anthropic.Anthropic`` (it appends ``/v1/messages``)."""
        return self.base_url

    # -- script and record

    def script(self, *replies: Reply) -> None:
        """Queue replies, consumed in order by the next requests to any route."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"not a scripted reply: {reply!r} (use openai_chat(), http_error()...)")
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are left."""
        with self._lock:
            return len(self._replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget the queued replies and the recorded requests."""
        with self._lock:
            self._replies.clear()
            self._requests.clear()

    # -- serving

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _answer(self, request: RecordedRequest) -> Wire:
        with self._lock:
            self._requests.append(request)
            number = len(self._requests)
            known = request.method == "POST" and request.path in ROUTES
            reply = self._replies.popleft() if known and self._replies else None
        what = f"{request.method} {request.path} (request #{number})"
        if not known:
            wire = self._failure(request, 404, f"LLMServer: no route for {what}", "not_found_error")
        elif reply is None:
            wire = self._failure(request, 500, f"LLMServer: the script ran out: no scripted reply left for {what}")
        elif not reply.accepts(request.path):
            message = f"LLMServer: the scripted {type(reply).__name__} answers {reply.answers()}, not {what}"
            wire = self._failure(request, 500, message)
        else:
            try:
                wire = reply.render(request)
            except Exception as error:
                wire = self._failure(request, 500, f"LLMServer: rendering {reply!r} failed: {error!r}")
        wire.headers.setdefault("request-id" if request.is_anthropic else "x-request-id", _new_id("req_"))
        return wire

    @staticmethod
    def _failure(request: RecordedRequest, status: int, message: str, anthropic_type: str | None = None) -> Wire:
        """An answer the script did not ask for: never retried by the SDKs (``x-should-retry: false``)."""
        if request.is_anthropic:
            payload = error_json(True, status, message, anthropic_type)
        else:
            kind = "server_error" if status >= 500 else "invalid_request_error"
            payload = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return _json_wire(payload, status, {"x-should-retry": "false"})


__all__ = [
    "CHAT_COMPLETIONS",
    "MESSAGES",
    "RESPONSES",
    "AnthropicMessage",
    "BrokenStream",
    "HttpError",
    "JsonReply",
    "LLMServer",
    "OpenAIChat",
    "OpenAIResponse",
    "RecordedRequest",
    "Reply",
    "Wire",
    "anthropic_message",
    "broken_stream",
    "error_json",
    "fragments",
    "http_error",
    "json_reply",
    "openai_chat",
    "openai_response",
    "words",
]
