"""Messages and tool definitions as JSON in the GenAI semantic conventions' shapes.

A message is ``{"role", "parts": [...]}`` with parts ``{"type": "text", "content"}``, ``{"type": "tool_call",
"id", "name", "arguments"}``, ``{"type": "tool_call_response", "id", "response"}`` and ``{"type": "reasoning",
"content"}`` (an assistant's reasoning, first: the model gave it before its answer); an output message also has
``finish_reason``. A part's ``id`` is left out when it is unknown (the schema allows no id; an empty one would be
an id that links to nothing). Reasoning is content: it goes through the policy as text does.

>>> from otel_agent_eval.model import AssistantMessage, ToolCall
>>> from otel_agent_eval.instrument.content import ContentPolicy
>>> step = AssistantMessage(index=1, tool_calls=(ToolCall(id="", name="f", arguments={}),), finish_reason="tool_calls")
>>> step_message(step, ContentPolicy())
{'role': 'assistant', 'parts': [{'type': 'tool_call', 'name': 'f', 'arguments': {}}], 'finish_reason': 'tool_call'}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..model import AssistantMessage, Step, ToolCall, ToolDefinition, UserMessage
from .content import ContentPolicy

# One encoder for every attribute: json.dumps with options builds a new encoder on each call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def dumps(value: Any) -> str:
    """JSON for an attribute; values JSON cannot hold are written as their ``str()`` rather than failing."""
    return _ENCODER.encode(value)


# Provider finish reasons (OpenAI, Anthropic, Gemini spellings, compared in lower case) mapped to the
# conventions' FinishReason enum.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_calls": "tool_call",
    "tool_call": "tool_call",
    "function_call": "tool_call",
    "tool_use": "tool_call",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "refusal": "content_filter",
    "error": "error",
}


def finish_reason(step: AssistantMessage) -> str:
    """The output message's ``finish_reason``: the provider's value in the conventions' enum.

    An unknown provider value is kept as it is (the schema allows any string); with none, it is inferred from
    the answer, because the schema requires the field on an output message.
    """
    if step.finish_reason:
        return _FINISH_REASONS.get(step.finish_reason.lower(), step.finish_reason)
    return "tool_call" if step.tool_calls else "stop"


def text_parts(text: str | None, policy: ContentPolicy) -> list[dict[str, Any]]:
    content = policy.text(text)
    return [{"type": "text", "content": content}] if content else []


def reasoning_parts(reasoning: str | None, policy: ContentPolicy) -> list[dict[str, Any]]:
    """The conventions' ``ReasoningPart`` (``{"type": "reasoning", "content"}``), through the policy like text."""
    content = policy.text(reasoning)
    return [{"type": "reasoning", "content": content}] if content else []


def tool_call_part(call: ToolCall, policy: ContentPolicy) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "tool_call"}
    if call.id:
        part["id"] = call.id
    part["name"] = call.name
    if policy.capture:
        part["arguments"] = (
            policy.json_value(dict(call.arguments)) if call.arguments is not None else policy.text(call.raw_arguments)
        )
    return part


def step_message(step: Step, policy: ContentPolicy) -> dict[str, Any]:
    """A step as one GenAI message."""
    if isinstance(step, UserMessage):
        # A user's own tool calls (dual control) are tool_call parts of the user message.
        parts = text_parts(step.content, policy) + [tool_call_part(c, policy) for c in step.tool_calls]
        return {"role": "user", "parts": parts}
    if isinstance(step, AssistantMessage):
        parts = reasoning_parts(step.reasoning, policy) + text_parts(step.content, policy)
        parts += [tool_call_part(c, policy) for c in step.tool_calls]
        return {"role": "assistant", "parts": parts, "finish_reason": finish_reason(step)}
    response: dict[str, Any] = {"type": "tool_call_response"}
    if step.call_id:
        response["id"] = step.call_id
    if policy.capture:
        response["response"] = policy.text(step.result if step.result is not None else step.error)
    return {"role": "tool", "parts": [response]}


def tool_definitions_json(tools: Iterable[ToolDefinition]) -> str:
    """Tool definitions in the conventions' flat shape ``{"type": "function", "name", "description", "parameters"}``.

    ``description`` is required by the conventions' schema (gen-ai-tool-definitions.json), so a tool without
    one is written with ``""``.
    """
    out = []
    for tool in tools:
        entry: dict[str, Any] = {"type": "function", "name": tool.name, "description": tool.description or ""}
        if tool.parameters is not None:
            entry["parameters"] = tool.parameters
        out.append(entry)
    return dumps(out)


# --- messages given by the caller ------------------------------------------------------------------------

# Fields that carry content, in GenAI parts (content, arguments, response; result in older drafts) and in
# OpenAI-style messages (content, text parts, function arguments, refusal), and every field of reasoning
# (reasoning_content, reasoning, thinking: the reader's REASONING_FIELDS; Anthropic thinking blocks' thinking).
_CONTENT_FIELDS = frozenset(
    {"content", "text", "arguments", "response", "result", "refusal", "reasoning_content", "reasoning", "thinking"}
)
# Fields holding parts or calls, whose own content fields are redacted in turn (a bare string in one is content):
# LiteLLM's thinking_blocks, OpenRouter's reasoning_details, a reasoning item's summary parts.
_NESTED_FIELDS = frozenset(
    {"parts", "tool_calls", "function", "function_call", "thinking_blocks", "reasoning_details", "summary"}
)
# Content fields that may hold a list of parts instead of text: each part's content is redacted in turn.
_PART_LIST_FIELDS = frozenset({"content", "reasoning_content", "reasoning", "thinking"})


def redact_messages(messages: Sequence[Any], policy: ContentPolicy) -> list[Any]:
    """Messages the caller passed (GenAI or OpenAI-style), with ``policy`` applied to their content fields.

    Roles, types, names and ids are structure and are kept as they are; an unknown field is kept too.

    >>> policy = ContentPolicy(redact=lambda s: "<r>")
    >>> redact_messages([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}], policy)
    [{'role': 'user', 'parts': [{'type': 'text', 'content': '<r>'}]}]
    >>> call = {"id": "c", "function": {"name": "f", "arguments": "{}"}}
    >>> redact_messages([{"role": "assistant", "tool_calls": [call]}], policy)
    [{'role': 'assistant', 'tool_calls': [{'id': 'c', 'function': {'name': 'f', 'arguments': '<r>'}}]}]
    """
    if policy.redact is None:
        return list(messages)
    return [_redact_fields(m, policy) for m in messages]


def _redact_fields(value: Any, policy: ContentPolicy) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key in _NESTED_FIELDS or (key in _PART_LIST_FIELDS and isinstance(item, (list, tuple))):
                out[key] = _redact_fields(item, policy)  # a list of content parts: redact each part's content
            elif key in _CONTENT_FIELDS:
                out[key] = policy.json_value(item)
            else:
                out[key] = item
        return out
    if isinstance(value, (list, tuple)):
        return [_redact_fields(v, policy) for v in value]
    return policy.json_value(value)  # a bare string where a part or message was expected is content
