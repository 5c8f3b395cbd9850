"""The OpenAI Python SDK: chat completions (tools, streaming) and the Responses API, sync and async.

>>> from otel_agent_eval.instrument.auto.openai import OpenAIInstrumentor
>>> OpenAIInstrumentor().instrumentation_dependencies()
('openai >= 1.40',)

``OpenAIInstrumentor().instrument(tracer_provider=..., content=ContentPolicy(...))``, or
``opentelemetry-instrument python app.py`` (entry point ``otel_agent_eval_openai``), or
``otel_agent_eval.instrument()`` for every instrumentor whose library is installed. Each
``chat.completions.create`` and ``responses.create`` call is a ``chat`` span of the run it belongs to (see
:mod:`..conversation`): input messages, tool definitions, the answer (text and tool calls), finish reason,
token usage, the response id and model; an error (a rate limit, a refused request) marks the span failed
with ``error.type`` and propagates unchanged. A streamed answer is recorded as the application reads it.

The ``chat.completions.stream`` and ``responses.stream`` helpers go through ``create`` and are recorded too.
Not covered: ``chat.completions.parse`` (it posts by itself), the legacy ``completions`` API, embeddings and
the other endpoints (not agent steps). A streamed chat completion has token usage only when the application
asks for it (``stream_options={"include_usage": True}``): the request is never changed. Do not also install
``opentelemetry-instrumentation-openai-v2`` or OpenLLMetry's OpenAI instrumentor in the same process: each
would record the same calls again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from ...ingest.messages import ROLE_ALIASES, ChatMessage, content_text, parse_openai_message, parse_tool_call
from ...model import ToolDefinition
from .. import guard
from ..api import get_tracer
from ..content import ContentPolicy
from ..conversation import ModelCall, Prompt, genai_message, message_key, start_model_call
from ._wrapping import model_call_wrapper, plain, text_or_none

PROVIDER = "openai"
_TARGETS = (
    ("openai.resources.chat.completions", "Completions.create", False, "chat"),
    ("openai.resources.chat.completions", "AsyncCompletions.create", True, "chat"),
    ("openai.resources.responses", "Responses.create", False, "responses"),
    ("openai.resources.responses", "AsyncResponses.create", True, "responses"),
)


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Records the OpenAI SDK's model calls as agent steps."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.40",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = get_tracer(kwargs.get("tracer_provider"))
        policy: ContentPolicy | None = kwargs.get("content")
        for module, name, is_async, api in _TARGETS:
            start = _start_chat if api == "chat" else _start_responses
            accumulate = _ChatChunks if api == "chat" else _ResponseEvents
            finish = _finish_chat if api == "chat" else _finish_response
            wrapper = model_call_wrapper(tracer, policy, start, finish, accumulate, is_async)
            try:
                wrap_function_wrapper(module, name, wrapper)
            except (ImportError, AttributeError) as exc:  # an SDK version without this API
                guard.log_failure(f"instrumenting {module}.{name}", exc)

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        for module, name, _, _ in _TARGETS:
            cls_name, method = name.split(".")
            try:
                unwrap(getattr(importlib.import_module(module), cls_name), method)
            except (ImportError, AttributeError):
                continue


# --- chat completions -----------------------------------------------------------------------------------


def _tools(value: Any) -> tuple[ToolDefinition, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    out = []
    for tool in value:
        tool = plain(tool)
        try:
            if isinstance(tool, Mapping) and tool.get("type", "function") == "function":
                out.append(ToolDefinition.from_openai(tool))
        except ValueError:
            continue  # a built-in tool (web search, ...) or one we cannot read: not a function tool
    return tuple(out)


def chat_prompt(messages: Any) -> Prompt:
    """Chat-completions messages as a :class:`Prompt`. Plain dict messages with text content, the common case,
    are written straight into GenAI messages, tool call arguments left as the model wrote them (decoding them
    is the evaluator's work, not the application's); anything else is read by the full parser.

    >>> prompt = chat_prompt([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
    ...     {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}])
    >>> prompt.keys
    (('user', 'hi'), ('assistant', ('c1',)))
    >>> prompt.messages[1]["parts"]
    [{'type': 'tool_call', 'id': 'c1', 'name': 'f', 'arguments': '{"a": 1}'}]
    """
    out: list[dict[str, Any]] = []
    keys: list[Any] = []
    if not isinstance(messages, (list, tuple)):
        return Prompt(out, ())  # an iterator would be used up here, before the SDK sends it: not read
    for i, raw in enumerate(messages):
        message = plain(raw)
        fast = _fast_message(message) if type(message) is dict else None
        if fast is None:
            parsed = parse_openai_message(message, field=f"messages[{i}]", strict=False)
            fast = genai_message(parsed), message_key(parsed)
        out.append(fast[0])
        keys.append(fast[1])
    return Prompt(out, tuple(keys))


def _fast_message(message: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
    """A plain message in GenAI shape with its key, or ``None`` when it needs the full parser."""
    raw_role = message.get("role")
    role = ROLE_ALIASES.get(raw_role) if type(raw_role) is str else None
    content = message.get("content")
    if content is None and type(message.get("refusal")) is str:
        content = message["refusal"]  # the answer was recorded with its refusal as its text: the same key
    if role is None or not (content is None or type(content) is str) or message.get("function_call"):
        return None
    if role == "tool":
        call_id = message.get("tool_call_id")
        if call_id is not None and type(call_id) is not str:
            return None
        part: dict[str, Any] = {"type": "tool_call_response"}
        if call_id:
            part["id"] = call_id
        part["response"] = content if content is not None else ""
        return {"role": "tool", "parts": [part]}, ("tool", call_id or content or "")
    parts: list[dict[str, Any]] = [{"type": "text", "content": content}] if content else []
    ids = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if type(call) is dict else None
        name = function.get("name") if type(function) is dict else None
        call_id = call.get("id") if type(call) is dict else None
        if type(name) is not str or not name or (call_id is not None and type(call_id) is not str):
            return None
        tool_part: dict[str, Any] = {"type": "tool_call"}
        if call_id:
            tool_part["id"] = call_id
        tool_part["name"] = name
        tool_part["arguments"] = function.get("arguments")  # type: ignore[union-attr]
        parts.append(tool_part)
        ids.append(call_id or name)
    if ids:
        if role not in ("assistant", "user"):
            return None
        key: Any = ("assistant", tuple(ids)) if role == "assistant" else (role, (content or "").strip())
    else:
        key = (role, (content or "").strip())
    return {"role": role, "parts": parts}, key


def _start_chat(tracer: Any, kwargs: Mapping[str, Any], policy: ContentPolicy | None) -> ModelCall:
    return start_model_call(
        tracer,
        provider=PROVIDER,
        model=text_or_none(kwargs.get("model")),
        messages=chat_prompt(kwargs.get("messages")),
        tool_definitions=_tools(kwargs.get("tools")),
        policy=policy,
    )


def _finish_chat(call: ModelCall, completion: Any) -> None:
    choices = getattr(completion, "choices", None)
    if not choices:
        call.end()  # a raw response (with_raw_response) or an empty answer: the call is recorded as made
        return
    choice = choices[0]
    message = getattr(choice, "message", None)
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in (getattr(message, "tool_calls", None) or ())
        if getattr(c, "function", None) is not None
    ]
    usage = getattr(completion, "usage", None)
    call.finish(
        content=getattr(message, "content", None) or getattr(message, "refusal", None),
        tool_calls=calls,
        finish_reason=getattr(choice, "finish_reason", None),
        input_tokens=getattr(usage, "prompt_tokens", None),
        output_tokens=getattr(usage, "completion_tokens", None),
        model=getattr(completion, "model", None),
        response_id=getattr(completion, "id", None),
    )


class _ChatChunks:
    """A streamed chat completion put back together as it is read: the first choice's text and tool calls,
    usage. Only the pieces are kept. Complete at the chunk with the finish reason, or, when the request asked
    for usage (``stream_options.include_usage``), at the usage chunk that follows it."""

    def __init__(self, request: Mapping[str, Any]) -> None:
        options = request.get("stream_options")
        self.wants_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.usage: Any = None
        self.seen = False

    def add(self, chunk: Any) -> bool:
        if not self.seen:
            self.seen, self.model, self.id = True, chunk.model, chunk.id
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index:
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    self.text.append(delta.content)
                if delta.tool_calls:
                    self._calls(delta.tool_calls)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return self.finish_reason is not None and (self.usage is not None or not self.wants_usage)

    def _calls(self, parts: Any) -> None:
        for part in parts:
            entry = self.calls.setdefault(part.index, {"id": None, "name": "", "arguments": []})
            if part.id:
                entry["id"] = part.id
            function = part.function
            if function is not None:
                if function.name:
                    entry["name"] += function.name
                if function.arguments:
                    entry["arguments"].append(function.arguments)

    def finish(self, call: ModelCall) -> None:
        if not self.seen:
            call.end()  # nothing came: no answer to record
            return
        call.finish(
            content="".join(self.text) or None,
            tool_calls=[
                {"id": c["id"], "name": c["name"], "arguments": "".join(c["arguments"])}
                for _, c in sorted(self.calls.items())
            ],
            finish_reason=self.finish_reason,
            input_tokens=getattr(self.usage, "prompt_tokens", None),
            output_tokens=getattr(self.usage, "completion_tokens", None),
            model=self.model,
            response_id=self.id,
        )


# --- the Responses API ------------------------------------------------------------------------------------


def response_input_messages(instructions: Any, items: Any) -> list[ChatMessage]:
    """The Responses API's ``instructions`` and ``input`` (a string, or a list of items) as messages.

    Function calls that follow one another (and the assistant text before them) are one assistant message,
    as the answer that made them was.

    >>> [m.role for m in response_input_messages("Be brief.", [{"role": "user", "content": "hi"},
    ...     {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ...     {"type": "function_call_output", "call_id": "c1", "output": "ok"}])]
    ['system', 'user', 'assistant', 'tool']
    """
    out: list[ChatMessage] = []
    if isinstance(instructions, str) and instructions:
        out.append(ChatMessage(role="system", content=instructions))
    if isinstance(items, str):
        return [*out, ChatMessage(role="user", content=items)]
    if not isinstance(items, (list, tuple)):
        return out  # an iterator would be used up here, before the SDK sends it: not read
    for i, raw in enumerate(items):
        item = plain(raw)
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "function_call":
            call = parse_tool_call(
                {"id": item.get("call_id"), "name": item.get("name"), "arguments": item.get("arguments")},
                field=f"input[{i}]",
                strict=False,
            )
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = ChatMessage(role="assistant", content=last.content, tool_calls=(*last.tool_calls, call))
            else:
                out.append(ChatMessage(role="assistant", tool_calls=(call,)))
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else content_text(output, field=f"input[{i}].output")
            out.append(ChatMessage(role="tool", content=text, tool_call_id=item.get("call_id")))
        elif kind == "message" and "role" in item:
            out.append(
                parse_openai_message(
                    {"role": item["role"], "content": _item_text(item.get("content"))},
                    field=f"input[{i}]",
                    strict=False,
                )
            )
    return out


def _item_text(content: Any) -> Any:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and "text" in p)
    return content


def _start_responses(tracer: Any, kwargs: Mapping[str, Any], policy: ContentPolicy | None) -> ModelCall:
    return start_model_call(
        tracer,
        provider=PROVIDER,
        model=text_or_none(kwargs.get("model")),
        messages=response_input_messages(kwargs.get("instructions"), kwargs.get("input")),
        tool_definitions=_tools(kwargs.get("tools")),
        policy=policy,
        previous_response_id=text_or_none(kwargs.get("previous_response_id")),
    )


def _finish_response(call: ModelCall, response: Any) -> None:
    output = getattr(response, "output", None)
    if output is None:
        call.end()
        return
    text: list[str] = []
    calls = []
    for item in output:
        kind = getattr(item, "type", None)
        if kind == "message":
            text.extend(
                getattr(p, "text", "") for p in (getattr(item, "content", None) or ()) if getattr(p, "text", None)
            )
        elif kind == "function_call":
            calls.append({"id": item.call_id, "name": item.name, "arguments": item.arguments})
    usage = getattr(response, "usage", None)
    status = getattr(response, "status", None)
    incomplete = getattr(getattr(response, "incomplete_details", None), "reason", None)
    call.finish(
        content="".join(text) or None,
        tool_calls=calls,
        finish_reason=incomplete or ("tool_calls" if calls else ("stop" if status == "completed" else status)),
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
        model=getattr(response, "model", None),
        response_id=getattr(response, "id", None),
    )


class _ResponseEvents:
    """A streamed response: the final ``response`` of its ``response.completed`` (or failed) event."""

    def __init__(self, request: Mapping[str, Any]) -> None:
        self.response: Any = None

    def add(self, event: Any) -> bool:
        if getattr(event, "type", None) in ("response.completed", "response.incomplete", "response.failed"):
            self.response = event.response
            return True
        return False

    def finish(self, call: ModelCall) -> None:
        if self.response is None:
            call.end()
        else:
            _finish_response(call, self.response)
