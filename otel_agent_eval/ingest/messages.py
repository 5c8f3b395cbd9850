"""Chat messages, in the shapes the world writes them, turned into steps.

Recorded runs (OpenAI chat messages, τ-bench, τ²) and the message lists carried on model-call spans (GenAI
``role`` + ``parts``, OpenInference's and OpenLLMetry's flattened attributes) all become :class:`ChatMessage`
first, then steps by :func:`messages_to_steps`: one reading of roles, tool calls and tool results for all.

An assistant message becomes a step as what it says to the user (:func:`assistant_text`): text an agent
framework wrapped in a JSON object (``{"message": "..."}``, ``{"thought": "...", "response": "..."}``) is that
text, its reasoning kept apart; the reasoning a model gives beside its answer (``reasoning_content``,
``reasoning``, ``thinking``, Anthropic ``thinking`` blocks, GenAI ``reasoning`` parts) is the step's
``reasoning``, never its text; and blank text beside tool calls is no message at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError
from ..model import AssistantMessage, JSONValue, Step, ToolCall, ToolExecution, UserMessage
from .jsonfile import loads

ROLE_ALIASES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}


@dataclass(slots=True)
class ChatMessage:
    """One message of a conversation, whatever it was read from.

    An intermediate reading, never changed once built (``dataclasses.replace`` makes a new one). Not frozen:
    a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which made building
    messages most of the cost of parsing a history (the in-loop guard parses one at every check).
    """

    role: str  # system | user | assistant | tool
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    error: bool = False
    requestor: str | None = None
    """Who asked for the tool calls of this message, or for the call this tool message answers (τ²'s
    ``requestor``), when the source says so; otherwise the role of the message holding the call."""
    call_id_field: str | None = None
    """Where a tool message's explicit call id was read (``messages[7].tool_call_id``), to name it in errors."""
    start_time_ns: int | None = None
    end_time_ns: int | None = None
    span_id: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    reasoning: str | None = None
    """What the model reasoned beside its answer (not shown to the user), when the source gives it apart."""
    text_read: bool = False
    """``content`` is already the text the user sees (:func:`assistant_text` applied): it is not read again."""

    def same_message(self, other: ChatMessage) -> bool:
        """Whether two readings are of the same message (used to line up prompts of successive model calls)."""
        return (
            self.role == other.role
            and (self.content or "") == (other.content or "")
            and self.tool_call_id == other.tool_call_id
            and [c.id or c.name for c in self.tool_calls] == [c.id or c.name for c in other.tool_calls]
        )


def normalize_role(role: object, *, field: str) -> str:
    if not isinstance(role, str) or role.lower() not in ROLE_ALIASES:
        raise InputError(f"role {role!r} is not user, assistant, tool or system", field=field)
    return ROLE_ALIASES[role.lower()]


def content_text(content: object, *, field: str) -> str | None:
    """Message content as text: a string, or a list of OpenAI content parts whose text parts are joined.

    Reasoning parts (Anthropic ``thinking`` blocks, ``reasoning`` parts) are not text: :func:`content_reasoning`
    reads them.
    """
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                if part.get("type") in REASONING_PART_TYPES:
                    continue
                text = part.get("text", part.get("content"))
                if isinstance(text, str):
                    texts.append(text)
        return "\n".join(texts)
    if isinstance(content, (dict, int, float, bool)):
        return json.dumps(content, ensure_ascii=False)
    raise InputError(f"content is a {type(content).__name__}, not text", field=field)


REASONING_PART_TYPES = frozenset({"reasoning", "thinking", "redacted_thinking"})
"""Content-part types that hold the model's reasoning, not its answer (GenAI ``reasoning``; Anthropic
``thinking`` and ``redacted_thinking``, whose text is encrypted and so not read)."""

REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
"""Message fields that hold the reasoning beside an answer: ``reasoning_content`` (DeepSeek, vLLM, LiteLLM),
``reasoning`` (OpenRouter, τ²), ``thinking`` (Ollama)."""


def content_reasoning(content: object) -> str | None:
    """The reasoning parts of a list of content parts, joined (``None`` when there are none).

    >>> content_reasoning([{"type": "thinking", "thinking": "Look it up."}, {"type": "text", "text": "Hi"}])
    'Look it up.'
    """
    if not isinstance(content, list):
        return None
    texts = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") in REASONING_PART_TYPES:
            text = part.get("thinking", part.get("content", part.get("text")))
            if isinstance(text, str) and text.strip():
                texts.append(text)
    return "\n\n".join(texts) if texts else None


def _message_reasoning(obj: Mapping[str, Any], raw_content: object) -> str | None:
    """The reasoning an OpenAI-style assistant message carries beside its content."""
    texts = []
    for key in REASONING_FIELDS:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            texts.append(value)
            break  # producers that write two of these write the same text twice
    parts = content_reasoning(raw_content) if type(raw_content) is list else None
    if parts:
        texts.append(parts)
    return "\n\n".join(texts) if texts else None


# Keys of a JSON object that wraps the text an agent says to the user ({"message": "..."}), and keys of the
# reasoning such an object may hold beside it ({"thought": "...", "message": "..."}).
_TEXT_KEYS = frozenset({"message", "response", "content", "text", "answer", "reply", "final_answer"})
_THOUGHT_KEYS = frozenset({"thought", "thoughts", "thinking", "reasoning", "reasoning_content", "rationale"})
# Keys that say what the object is, with the only value that keeps it a wrapper of the text.
_MARKER_KEYS = {"role": "assistant", "type": "text"}
_MAX_WRAPPING = 3


def assistant_text(content: str | None, *, tool_calls: bool = False) -> tuple[str | None, str | None]:
    """``(text, reasoning)``: what an assistant message says to the user, and the reasoning it wraps.

    Text that is a JSON object of exactly a wrapping shape -- one text field (``message``, ``response``,
    ``content``, ``text``, ``answer``, ``reply``, ``final_answer``) holding a string (or another such object),
    beside nothing but string reasoning fields (``thought``, ``thoughts``, ``thinking``, ``reasoning``,
    ``reasoning_content``, ``rationale``) and ``"role": "assistant"`` or ``"type": "text"`` -- is the text it
    wraps. Any other text, JSON included, is what the agent showed the user and is kept as written. With
    ``tool_calls``, blank text is ``None``: the message is its calls, not something said to the user.

    >>> assistant_text('{"thought": "The order is pending.", "message": "Your order is cancelled."}')
    ('Your order is cancelled.', 'The order is pending.')
    >>> assistant_text('{"order_id": "#W1", "status": "cancelled"}')
    ('{"order_id": "#W1", "status": "cancelled"}', None)
    >>> assistant_text("  ", tool_calls=True)
    (None, None)
    """
    if content is None:
        return None, None
    text: str | None = content
    reasoning = None
    stripped = content.strip()
    if stripped[:1] == "{" and stripped[-1:] == "}":
        try:
            decoded = loads(stripped)
        except ValueError:  # not JSON, or nested past the decoder's limit
            decoded = None
        unwrapped = _unwrap(decoded, _MAX_WRAPPING)
        if unwrapped is not None:
            text, thoughts = unwrapped
            reasoning = "\n\n".join(thoughts) if thoughts else None
    if tool_calls and text is not None and not text.strip():
        text = None
    return text, reasoning


def _unwrap(value: object, depth: int) -> tuple[str, list[str]] | None:
    """The text and reasoning of a wrapping object, or ``None`` when ``value`` is not one."""
    if type(value) is not dict or depth == 0:
        return None
    text: object = None
    thoughts: list[str] = []
    found = False
    for key, item in value.items():
        if key in _TEXT_KEYS:
            if found:
                return None  # two texts: not a wrapper of one
            found, text = True, item
        elif key in _THOUGHT_KEYS:
            if isinstance(item, str):
                if item.strip():
                    thoughts.append(item)
            elif item is not None:
                return None
        elif key not in _MARKER_KEYS or item != _MARKER_KEYS[key]:
            return None
    if isinstance(text, str):
        return text, thoughts
    inner = _unwrap(text, depth - 1) if found else None
    if inner is None:
        return None
    return inner[0], [*thoughts, *inner[1]]


def parse_arguments(value: object, *, field: str, strict: bool) -> tuple[Mapping[str, JSONValue] | None, str | None]:
    """Decode tool-call arguments (a JSON object, or its text).

    Returns ``(arguments, raw_text)``. Text that is not a JSON object raises :class:`InputError` when
    ``strict``, otherwise comes back as ``(None, text)``: a model's malformed call is evidence, not noise.
    """
    if value is None or value == "":
        return {}, None
    if isinstance(value, Mapping):
        return value, None
    if isinstance(value, str):
        try:
            decoded = loads(value)
        except json.JSONDecodeError as exc:
            if strict:
                raise InputError(f"tool arguments are not JSON ({exc.msg} at char {exc.pos})", field=field) from None
            return None, value
        if isinstance(decoded, Mapping):
            return decoded, None
        if strict:
            raise InputError(f"tool arguments are JSON {type(decoded).__name__}, not an object", field=field)
        return None, value
    raise InputError(f"tool arguments are a {type(value).__name__}, not a JSON object or its text", field=field)


def parse_tool_call(obj: object, *, field: str, strict: bool) -> ToolCall:
    """An OpenAI tool call (``{id, type, function: {name, arguments}}``) or the flat ``{id, name, arguments}``."""
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise InputError("tool call is not an object", field=field)
    fn = obj.get("function")
    if type(fn) is not dict and not isinstance(fn, Mapping):
        fn = obj
    assert isinstance(fn, Mapping)
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("tool call has no function name", field=f"{field}.name")
    call_id = obj.get("id")
    if call_id is not None and not isinstance(call_id, str):
        call_id = str(call_id)
    arguments, raw = parse_arguments(fn.get("arguments"), field=f"{field}.arguments", strict=strict)
    return ToolCall(id=call_id or "", name=name, arguments=arguments, raw_arguments=raw)


def parse_openai_message(obj: object, *, field: str, strict: bool = True) -> ChatMessage:
    """A message as the OpenAI chat API writes it (also τ-bench's and τ²'s messages).

    A user message may carry tool calls: in τ² dual control the user runs tools on their own side.
    """
    # Type checks go exact-type first: the in-loop guard parses a whole history at every check, and the
    # abstract-base-class checks were most of that time.
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise InputError(f"message is a {type(obj).__name__}, not an object", field=field)
    if "role" not in obj:
        raise InputError("message has no 'role'", field=f"{field}.role")
    raw_role = obj["role"]
    role = ROLE_ALIASES.get(raw_role) if type(raw_role) is str else None
    if role is None:
        role = normalize_role(raw_role, field=f"{field}.role")
    raw_content = obj.get("content")
    content = (
        raw_content
        if raw_content is None or type(raw_content) is str
        else content_text(raw_content, field=f"{field}.content")
    )
    calls_obj = obj.get("tool_calls") or ()
    if (type(calls_obj) is not list and type(calls_obj) is not tuple) and (
        not isinstance(calls_obj, Sequence) or isinstance(calls_obj, str)
    ):
        raise InputError("tool_calls is not a list", field=f"{field}.tool_calls")
    tool_calls = (
        tuple(parse_tool_call(c, field=f"{field}.tool_calls[{i}]", strict=strict) for i, c in enumerate(calls_obj))
        if calls_obj
        else ()
    )
    if tool_calls and role in ("system", "tool"):
        raise InputError(f"a {role} message carries tool_calls", field=f"{field}.tool_calls")
    if role == "assistant" and not tool_calls and obj.get("function_call"):  # the pre-tools OpenAI API
        tool_calls = (parse_tool_call(obj["function_call"], field=f"{field}.function_call", strict=strict),)
    requestor = _requestor(obj, field=field, strict=strict) if "requestor" in obj else None
    for i, c in enumerate(calls_obj):
        if requestor is not None:
            break
        requestor = _requestor(c, field=f"{field}.tool_calls[{i}]", strict=strict)
    id_key = "tool_call_id"
    tool_call_id = obj.get("tool_call_id")
    if role == "tool" and tool_call_id is None and isinstance(obj.get("id"), str):
        id_key, tool_call_id = "id", obj["id"]  # τ² keeps the call's id in "id"
    name = obj.get("name")
    error = obj.get("error")
    reasoning = _message_reasoning(obj, raw_content) if role == "assistant" else None
    if role == "tool" and error is None:
        # τ-bench tools answer errors as text starting with "Error:"; there is no other error signal.
        error = isinstance(content, str) and content.startswith("Error:")
    return ChatMessage(
        role=role,
        content=content,
        tool_calls=tool_calls,
        tool_call_id=str(tool_call_id) if tool_call_id is not None else None,
        tool_name=name if isinstance(name, str) else None,
        error=bool(error),
        requestor=requestor,
        call_id_field=f"{field}.{id_key}" if tool_call_id is not None else None,
        reasoning=reasoning,
    )


def _requestor(obj: object, *, field: str, strict: bool) -> str | None:
    value = obj.get("requestor") if isinstance(obj, Mapping) else None
    if value is None or value in ("user", "assistant"):
        return value
    if strict:
        raise InputError(f"requestor {value!r} is not user or assistant", field=f"{field}.requestor")
    return None


def parse_genai_messages(obj: object, *, field: str) -> list[ChatMessage]:
    """A message in the GenAI semantic conventions' shape: ``{"role", "parts": [...]}``.

    Parts: ``text`` (``content``), ``tool_call`` (``id``, ``name``, ``arguments``), ``tool_call_response``
    (``id``, ``response``), ``reasoning`` (``content``: the message's ``reasoning``, not its text); others
    (images, files) are skipped. Every ``tool_call_response`` is a tool message of its own (Anthropic-style
    APIs answer several calls in one user message), in front of what the message says besides; a message of
    nothing but responses is only those. An assistant message's text is read as what it says to the user
    (:func:`assistant_text`).
    """
    if not isinstance(obj, Mapping):
        raise InputError("message is not an object", field=field)
    if "parts" not in obj:  # some producers write OpenAI-shaped messages into gen_ai.*.messages
        return [read_as_said(parse_openai_message(obj, field=field, strict=False))]
    role = normalize_role(obj.get("role"), field=f"{field}.role")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    responses: list[ChatMessage] = []
    parts = obj.get("parts")
    if not isinstance(parts, list):
        raise InputError("parts is not a list", field=f"{field}.parts")
    for i, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise InputError("part is not an object", field=f"{field}.parts[{i}]")
        kind = part.get("type")
        if kind == "text":
            text = part.get("content")
            if isinstance(text, str):
                texts.append(text)
        elif kind == "tool_call":
            calls.append(parse_tool_call(part, field=f"{field}.parts[{i}]", strict=False))
        elif kind == "tool_call_response":
            response = part.get("response")
            responses.append(
                ChatMessage(
                    role="tool",
                    content=response if isinstance(response, str) else json.dumps(response, ensure_ascii=False),
                    tool_call_id=str(part["id"]) if part.get("id") is not None else None,
                    tool_name=obj.get("name") if isinstance(obj.get("name"), str) else None,
                )
            )
        elif kind in REASONING_PART_TYPES:
            thought = part.get("content", part.get("thinking", part.get("text")))
            if isinstance(thought, str) and thought.strip():
                thoughts.append(thought)
    if responses and not texts and not calls:
        return responses
    finish = obj.get("finish_reason")
    message = ChatMessage(
        role=role,
        content="\n".join(texts) if texts else None,
        tool_calls=tuple(calls),
        tool_name=obj.get("name") if isinstance(obj.get("name"), str) else None,
        finish_reason=finish if isinstance(finish, str) else None,
        reasoning="\n\n".join(thoughts) if thoughts and role == "assistant" else None,
    )
    return [*responses, read_as_said(message)]


def read_as_said(message: ChatMessage) -> ChatMessage:
    """An assistant message with its content read as what it says to the user (:func:`assistant_text`), the
    reasoning it wrapped added to its ``reasoning``; other messages, and one already read, as they are.

    >>> read_as_said(ChatMessage(role="assistant", content='{"response": "Done."}')).content
    'Done.'
    """
    if message.role != "assistant" or message.text_read:
        return message
    text, wrapped = assistant_text(message.content, tool_calls=bool(message.tool_calls))
    if text is message.content and wrapped is None:
        return message  # read as it is, so reading it again changes nothing
    reasoning = "\n\n".join(r for r in (message.reasoning, wrapped) if r) or None
    return replace(message, content=text, reasoning=reasoning, text_read=True)


def messages_to_steps(
    messages: Iterable[ChatMessage], *, first_index: int = 0, strict: bool = False
) -> tuple[str | None, list[Step]]:
    """Turn a conversation into ``(system_instructions, steps)``.

    Every message keeps its position (from ``first_index``) as its step index; system messages are joined
    into the system instructions. An assistant message's text is what it says to the user
    (:func:`read_as_said`). A tool message becomes a :class:`ToolExecution` whose name and arguments
    come from the call with the same id (the assistant's, or in dual control the user's), or, for a message
    without an id, the next unanswered call. ``strict`` (recorded runs) makes an explicit id that answers no
    earlier call an :class:`InputError`; otherwise the step keeps its id and no call.
    """
    system: list[str] = []
    steps: list[Step] = []
    calls: dict[str, _Call] = {}
    unanswered: list[_Call] = []
    for index, msg in enumerate(messages, start=first_index):
        timing: dict[str, Any] = {
            "index": index,
            "start_time_ns": msg.start_time_ns,
            "end_time_ns": msg.end_time_ns,
            "span_id": msg.span_id,
        }
        if msg.role == "system":
            if msg.content:
                system.append(msg.content)
            continue
        if msg.role in ("user", "assistant"):
            by = msg.requestor or msg.role
            for call in msg.tool_calls:
                entry = _Call(call, "user" if by == "user" else "assistant")
                if call.id:
                    calls[call.id] = entry
                unanswered.append(entry)
        if msg.role == "user":
            steps.append(UserMessage(content=msg.content, tool_calls=msg.tool_calls, **timing))
        elif msg.role == "assistant":
            msg = read_as_said(msg)
            steps.append(
                AssistantMessage(
                    content=msg.content,
                    reasoning=msg.reasoning,
                    tool_calls=msg.tool_calls,
                    model=msg.model,
                    provider=msg.provider,
                    input_tokens=msg.input_tokens,
                    output_tokens=msg.output_tokens,
                    finish_reason=msg.finish_reason,
                    **timing,
                )
            )
        else:
            answered = _answered(msg, calls, unanswered, strict=strict)
            if answered is not None and answered in unanswered:
                unanswered.remove(answered)
            asked = answered.call if answered else None
            by = msg.requestor or (answered.by if answered else "assistant")
            steps.append(
                ToolExecution(
                    name=msg.tool_name or (asked.name if asked else "unknown"),
                    call_id=msg.tool_call_id or (asked.id if asked else None),
                    arguments=asked.arguments if asked else None,
                    result=msg.content,
                    error=(msg.content or "tool error") if msg.error else None,
                    requested_by="user" if by == "user" else "assistant",
                    **timing,
                )
            )
    return ("\n\n".join(system) if system else None), steps


@dataclass(frozen=True, slots=True, eq=False)
class _Call:
    """A tool call and who asked for it (compared by identity: the same call may be asked twice)."""

    call: ToolCall
    by: str


def _answered(msg: ChatMessage, calls: dict[str, _Call], unanswered: list[_Call], *, strict: bool) -> _Call | None:
    """The call a tool message answers."""
    if msg.tool_call_id:
        # Ids are not always unique (τ-bench reuses them), so the open call with this id comes first. An explicit
        # id is never matched to another call by position: that would pin the result on the wrong call.
        found = next((c for c in unanswered if c.call.id == msg.tool_call_id), None) or calls.get(msg.tool_call_id)
        if found is None and strict:
            raise InputError("answers no call", field=msg.call_id_field or "tool_call_id")
        return found
    return next((c for c in unanswered if msg.tool_name in (None, c.call.name)), None)


def with_timing(msg: ChatMessage, start_ns: int | None, end_ns: int | None) -> ChatMessage:
    return replace(msg, start_time_ns=start_ns, end_time_ns=end_ns)
