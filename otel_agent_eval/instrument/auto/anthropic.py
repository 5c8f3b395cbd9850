"""The Anthropic Python SDK: the Messages API (tools, streaming, the ``stream`` helper), sync and async.

>>> from otel_agent_eval.instrument.auto.anthropic import AnthropicInstrumentor
>>> AnthropicInstrumentor().instrumentation_dependencies()
('anthropic >= 0.40',)

``AnthropicInstrumentor().instrument(tracer_provider=..., content=ContentPolicy(...))``, or
``opentelemetry-instrument python app.py`` (entry point ``otel_agent_eval_anthropic``), or
``otel_agent_eval.instrument()`` for every instrumentor whose library is installed. Each ``messages.create``
call, and each ``messages.stream(...)`` helper when its request is made (SDK 0.43 on), is a ``chat`` span of
the run it belongs to (see :mod:`..conversation`): the input messages (the ``system`` parameter first;
``tool_use`` blocks as tool calls, each ``tool_result`` block as a tool message), the custom tool definitions,
the answer (text and ``tool_use`` blocks), the stop reason, token usage (input tokens count the cache reads
and writes, as the GenAI conventions ask), the message id and model; an error (a rate limit, an overloaded
API) marks the span failed with ``error.type`` and propagates unchanged. A streamed answer is recorded as the
application reads it.

Not covered: the ``stream(...)`` helpers of SDK versions before 0.43 (they read the HTTP response past the
event stream), ``messages.parse`` and ``messages.count_tokens``, the ``beta`` namespace
(``client.beta.messages``, its tool runner), message batches, the legacy text completions API; server tools
(web search, code execution) are not in the tool definitions, and their blocks are not in the messages;
images, documents and thinking blocks are left out of the messages. Do not also install
``opentelemetry-instrumentation-anthropic`` (OpenLLMetry) or OpenInference's Anthropic instrumentor in the
same process: each would record the same calls again. SDK versions that make OpenTelemetry spans of their own
(``anthropic.messages.create``) make them while our span is current, so they nest under it and the evaluator
reads them as the same call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from ...errors import InputError
from ...ingest.jsonfile import loads
from ...ingest.messages import ChatMessage, parse_tool_call
from ...model import ToolCall, ToolDefinition
from .. import guard
from ..api import get_tracer
from ..content import ContentPolicy
from ..conversation import ModelCall, start_model_call
from ._wrapping import model_call_wrapper, plain, text_or_none

PROVIDER = "anthropic"
_MODULE = "anthropic.resources.messages"
_CREATE = (("Messages.create", False), ("AsyncMessages.create", True))
# The ``stream`` helpers make their request without ``create``: the request their manager makes is recorded.
_STREAM = (("Messages.stream", False), ("AsyncMessages.stream", True))
# Where each manager keeps its request (a private attribute, the same from 0.40 on): a callable, an awaitable.
_MANAGER_REQUEST = {
    "MessageStreamManager": "_MessageStreamManager__api_request",
    "AsyncMessageStreamManager": "_AsyncMessageStreamManager__api_request",
}


class AnthropicInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Records the Anthropic SDK's model calls as agent steps."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 0.40",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = get_tracer(kwargs.get("tracer_provider"))
        policy: ContentPolicy | None = kwargs.get("content")
        targets: list[tuple[str, Callable[..., Any]]] = []
        for name, is_async in _CREATE:
            targets.append((name, model_call_wrapper(tracer, policy, _start, _finish, _MessageEvents, is_async)))
        for name, is_async in _STREAM if _helpers_read_raw_events() else ():
            record = model_call_wrapper(tracer, policy, _start, _finish, _MessageEvents, is_async)
            targets.append((name, _stream_helper_wrapper(record, is_async)))
        for name, wrapper in targets:
            try:
                wrap_function_wrapper(_MODULE, name, wrapper)
            except (ImportError, AttributeError) as exc:  # an SDK version without this API
                guard.log_failure(f"instrumenting {_MODULE}.{name}", exc)

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        for name, _ in (*_CREATE, *_STREAM):
            cls_name, method = name.split(".")
            try:
                unwrap(getattr(importlib.import_module(_MODULE), cls_name), method)
            except (ImportError, AttributeError):
                continue


def _helpers_read_raw_events() -> bool:
    """Whether the SDK's ``stream`` helpers read the raw event stream their request returns (from 0.43 on);
    before, they read its HTTP response themselves, past anything wrapped around the stream."""
    try:
        from anthropic.lib.streaming import AsyncMessageStream, MessageStream

        return all(
            "raw_stream" in inspect.signature(cls.__init__).parameters for cls in (MessageStream, AsyncMessageStream)
        )
    except Exception:
        return False


def _stream_helper_wrapper(record: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """``messages.stream(...)``: the manager it returns, its request recorded (as ``create(stream=True)``)
    when the manager makes it, its raw events read through a stream proxy."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        manager = wrapped(*args, **kwargs)
        try:
            attribute = _MANAGER_REQUEST[type(manager).__name__]
            request = getattr(manager, attribute)
            request_kwargs = {**kwargs, "stream": True}
            if is_async:
                # An awaitable, awaited by ``__aenter__``: the call starts then (the coroutine runs only then).
                setattr(manager, attribute, record(lambda **_: request, instance, (), request_kwargs))
            else:
                setattr(manager, attribute, lambda: record(lambda **_: request(), instance, (), request_kwargs))
        except Exception as exc:  # another manager than we know: the stream goes ahead unrecorded
            guard.log_failure("a message stream helper", exc)
        return manager

    return wrapper


# --- the request -------------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A string, or the text of a list of content blocks (``text`` blocks, dicts or SDK objects), a line each."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        texts = []
        for raw in value:
            block = plain(raw)
            if isinstance(block, str):
                texts.append(block)
            elif (
                isinstance(block, Mapping)
                and block.get("type", "text") == "text"
                and isinstance(block.get("text"), str)
            ):
                texts.append(block["text"])
        return "\n".join(texts)
    return None


def anthropic_input_messages(system: Any, messages: Any) -> list[ChatMessage]:
    """The Messages API's ``system`` parameter and ``messages`` as chat messages.

    An assistant's ``tool_use`` blocks are its tool calls (with its text, in one message); each ``tool_result``
    block of a user message is a tool message of its own, in order, followed by the user message's text if
    it has any. Images, documents and thinking blocks are left out.

    >>> [(m.role, m.content, m.tool_call_id) for m in anthropic_input_messages("Be brief.", [
    ...     {"role": "user", "content": "Weather in Paris?"},
    ...     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather",
    ...                                        "input": {"city": "Paris"}}]},
    ...     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
    ...                                  {"type": "text", "text": "And tomorrow?"}]}])]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('system', 'Be brief.', None), ('user', 'Weather in Paris?', None), ('assistant', None, None),
     ('tool', 'sunny', 't1'), ('user', 'And tomorrow?', None)]
    """
    out: list[ChatMessage] = []
    instructions = _text(system)
    if instructions:
        out.append(ChatMessage(role="system", content=instructions))
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        messages = ()  # an iterator (the SDK accepts one) is the SDK's to read: recorded without messages
    for i, raw in enumerate(messages):
        message = plain(raw)
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            continue
        role = message["role"]
        content = message.get("content")
        if content is None or isinstance(content, str):
            out.append(ChatMessage(role=role, content=content))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        results: list[ChatMessage] = []
        for j, raw_block in enumerate(content if isinstance(content, Sequence) else ()):
            block = plain(raw_block)
            if isinstance(block, str):
                texts.append(block)
                continue
            if not isinstance(block, Mapping):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "tool_use" and role == "assistant":
                try:
                    calls.append(
                        parse_tool_call(
                            {"id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")},
                            field=f"messages[{i}].content[{j}]",
                            strict=False,
                        )
                    )
                except InputError:
                    continue  # a block without a name: not a call we can follow
            elif kind == "tool_result" and role == "user":
                tool_use_id = block.get("tool_use_id")
                results.append(
                    ChatMessage(
                        role="tool",
                        content=_text(block.get("content")),
                        tool_call_id=str(tool_use_id) if tool_use_id is not None else None,
                        error=bool(block.get("is_error")),
                    )
                )
        out.extend(results)
        if role == "assistant":
            # The answer's text blocks are one text (citations split it into blocks), as in the recorded answer.
            out.append(ChatMessage(role="assistant", content="".join(texts) or None, tool_calls=tuple(calls)))
        elif texts or not results:
            out.append(ChatMessage(role="user", content="\n".join(texts) if texts else None))
    return out


def _tools(value: Any) -> tuple[ToolDefinition, ...]:
    """The custom tools' definitions; server tools (``web_search_...``, ``bash_...``) are not the agent's."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    out = []
    for raw in value:
        tool = plain(raw)
        if not isinstance(tool, Mapping) or tool.get("type", "custom") not in ("custom", None):
            continue
        name, description, schema = tool.get("name"), tool.get("description"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            continue
        out.append(
            ToolDefinition(
                name=name,
                description=description if isinstance(description, str) else None,
                parameters=dict(schema) if isinstance(schema, Mapping) else None,
            )
        )
    return tuple(out)


def _start(tracer: Any, kwargs: Mapping[str, Any], policy: ContentPolicy | None) -> ModelCall:
    return start_model_call(
        tracer,
        provider=PROVIDER,
        model=text_or_none(kwargs.get("model")),
        messages=anthropic_input_messages(kwargs.get("system"), kwargs.get("messages")),
        tool_definitions=_tools(kwargs.get("tools")),
        policy=policy,
    )


# --- the answer ------------------------------------------------------------------------------------------


def _input_tokens(usage: Any) -> int | None:
    """All input tokens: the API counts cache reads and cache writes apart from ``input_tokens``."""
    tokens = getattr(usage, "input_tokens", None)
    if not isinstance(tokens, int):
        return None
    for cached in ("cache_read_input_tokens", "cache_creation_input_tokens"):
        more = getattr(usage, cached, None)
        if isinstance(more, int):
            tokens += more
    return tokens


def _finish(call: ModelCall, message: Any) -> None:
    content = getattr(message, "content", None)
    if getattr(message, "type", None) != "message" or not isinstance(content, list):
        call.end()  # a raw response (with_raw_response): the call is recorded as made
        return
    texts = [b.text for b in content if getattr(b, "type", None) == "text" and isinstance(b.text, str)]
    calls = [
        {"id": b.id, "name": b.name, "arguments": b.input} for b in content if getattr(b, "type", None) == "tool_use"
    ]
    usage = getattr(message, "usage", None)
    call.finish(
        content="".join(texts) or None,
        tool_calls=calls,
        finish_reason=getattr(message, "stop_reason", None),
        input_tokens=_input_tokens(usage),
        output_tokens=getattr(usage, "output_tokens", None),
        model=getattr(message, "model", None),
        response_id=getattr(message, "id", None),
    )


class _MessageEvents:
    """A streamed message put back together from its raw events: text and tool uses by block, usage."""

    def __init__(self, request: Mapping[str, Any] | None = None) -> None:
        self.started = False
        self.blocks: dict[int, dict[str, Any]] = {}
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    def _usage(self, usage: Any) -> None:
        tokens = _input_tokens(usage)
        self.input_tokens = tokens if tokens is not None else self.input_tokens
        output = getattr(usage, "output_tokens", None)
        self.output_tokens = output if isinstance(output, int) else self.output_tokens

    def add(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "message_stop":
            return True  # the message is complete
        if kind == "message_start":
            self.started = True
            message = event.message
            self.id = getattr(message, "id", None) or self.id
            self.model = getattr(message, "model", None) or self.model
            self._usage(getattr(message, "usage", None))
        elif kind == "content_block_start":
            block = event.content_block
            block_type = getattr(block, "type", None)
            if block_type == "text":
                self.blocks[event.index] = {"type": "text", "text": [getattr(block, "text", None) or ""]}
            elif block_type == "tool_use":
                self.blocks[event.index] = {
                    "type": "tool_use",
                    "id": block.id,
                    "name": block.name,
                    "input": getattr(block, "input", None),
                    "json": [],
                }
        elif kind == "content_block_delta":
            entry = self.blocks.get(event.index)
            delta = event.delta
            delta_type = getattr(delta, "type", None)
            if entry is None:
                return False
            if delta_type == "text_delta" and entry["type"] == "text":
                entry["text"].append(delta.text)
            elif delta_type == "input_json_delta" and entry["type"] == "tool_use":
                entry["json"].append(delta.partial_json)
        elif kind == "message_delta":
            self.stop_reason = getattr(event.delta, "stop_reason", None) or self.stop_reason
            self._usage(getattr(event, "usage", None))
        return False

    def finish(self, call: ModelCall) -> None:
        if not self.started:
            call.end()  # nothing came: no answer to record
            return
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for _, block in sorted(self.blocks.items()):
            if block["type"] == "text":
                texts.append("".join(block["text"]))
            else:
                calls.append({"id": block["id"], "name": block["name"], "arguments": _streamed_input(block)})
        call.finish(
            content="".join(texts) or None,
            tool_calls=calls,
            finish_reason=self.stop_reason,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            model=self.model,
            response_id=self.id,
        )


def _streamed_input(block: Mapping[str, Any]) -> Any:
    """A tool use's input from its JSON fragments; text that is not a JSON object is kept as text."""
    text = "".join(block["json"])
    if not text.strip():
        start = block.get("input")
        return start if isinstance(start, Mapping) else {}
    try:
        decoded = loads(text)  # never more than ValueError, however deep the model's JSON
    except ValueError:
        return text
    return decoded if isinstance(decoded, dict) else text
