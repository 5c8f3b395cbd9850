"""What one span says about an agent run, in whichever attribute dialect it was written.

Dialects read, in this order of precedence:

1. **otel-agent-eval** (``agent_eval.step.kind``): our own spans, one step each.
2. **GenAI semantic conventions** (``gen_ai.operation.name``): ``invoke_agent``, ``chat`` /
   ``text_completion`` / ``generate_content`` with ``gen_ai.input.messages`` / ``gen_ai.output.messages``,
   ``execute_tool`` with ``gen_ai.tool.*``.
3. **OpenInference** (``openinference.span.kind``): ``LLM`` spans with ``llm.input_messages.N.message.*``,
   ``TOOL`` spans with ``tool.name`` / ``input.value`` / ``output.value``, ``AGENT`` spans.
4. **OpenLLMetry and the older GenAI names** (``traceloop.span.kind``, ``gen_ai.system`` with indexed
   ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``).

A span none of them recognises reads as ``"other"`` and is left alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from .. import semconv as sc
from ..errors import InputError
from ..model import ApplicationOutcome, ExpectedAction, Reference, RunSource, ToolCall, ToolDefinition
from .jsonfile import loads
from .messages import ChatMessage, normalize_role, parse_arguments, parse_genai_messages
from .span_record import SpanRecord
from .values import as_bool, as_float, as_int

logger = logging.getLogger(__name__)
T = TypeVar("T")

SpanKindRead = Literal["agent", "model", "tool", "user", "other"]


@dataclass
class SpanReading:
    """What a span contributes to the run it belongs to."""

    kind: SpanKindRead
    step_index: int | None = None  # our spans carry the step's position explicitly
    inputs: list[ChatMessage] = field(default_factory=list)
    outputs: list[ChatMessage] = field(default_factory=list)
    system_instructions: str | None = None
    tool_definitions: tuple[ToolDefinition, ...] = ()
    tool_name: str | None = None
    tool_call_id: str | None = None
    tool_arguments: Mapping[str, Any] | None = None
    tool_result: str | None = None
    tool_error: str | None = None
    tool_requested_by: Literal["assistant", "user"] = "assistant"
    agent_name: str | None = None
    conversation_id: str | None = None
    outcome: ApplicationOutcome | None = None
    reference: Reference | None = None
    source: RunSource | None = None
    problems: list[str] = field(default_factory=list)
    """What could not be read (names and types, never content); logged once per span by :func:`read_span`."""


def read_span(span: SpanRecord) -> SpanReading:
    """What the span says, in the first dialect it matches. Malformed values are left out and logged."""
    a = span.attributes
    if sc.AGENT_EVAL_STEP_KIND in a or a.get(sc.GEN_AI_OPERATION_NAME):
        reading = _read_genai(span)
    elif sc.OPENINFERENCE_SPAN_KIND in a:
        reading = _read_openinference(span)
    elif sc.TRACELOOP_SPAN_KIND in a or sc.LLM_REQUEST_TYPE in a or _has_prefix(a, sc.LEGACY_PROMPT_PREFIX):
        reading = _read_openllmetry(span)
    else:
        return SpanReading(kind="other")
    reading.conversation_id = reading.conversation_id or _conversation_id(a)
    if reading.problems:
        # A malformed span would otherwise read as silently empty. The problems name attributes and types only.
        logger.warning("span %s (trace %s): %s", span.span_id, span.trace_id, "; ".join(reading.problems))
    return reading


# --- GenAI semantic conventions, and our own step spans ------------------------------------------------------


def _read_genai(span: SpanRecord) -> SpanReading:
    a = span.attributes
    op = _str(a.get(sc.GEN_AI_OPERATION_NAME))  # an array or a map here is no operation (and not hashable)
    explicit = _str(a.get(sc.AGENT_EVAL_STEP_KIND))
    problems: list[str] = []
    step_index = _attribute(a, sc.AGENT_EVAL_STEP_INDEX, as_int, "an integer", problems) if explicit else None
    if explicit == "user":
        reading = SpanReading(kind="user", step_index=step_index, problems=problems)
        reading.inputs = _json_messages(span, sc.GEN_AI_INPUT_MESSAGES, reading)
        return reading
    if explicit == "tool" or op == sc.OP_EXECUTE_TOOL:
        reading = SpanReading(kind="tool", step_index=step_index, problems=problems)
        _fill_tool(
            reading,
            span,
            a.get(sc.GEN_AI_TOOL_NAME),
            a.get(sc.GEN_AI_TOOL_CALL_ID),
            a.get(sc.GEN_AI_TOOL_CALL_ARGUMENTS),
            a.get(sc.GEN_AI_TOOL_CALL_RESULT),
        )
        return reading
    if explicit == "assistant" or op in sc.MODEL_OPERATIONS:
        reading = SpanReading(kind="model", step_index=step_index, problems=problems)
        reading.inputs = _json_messages(span, sc.GEN_AI_INPUT_MESSAGES, reading)
        reading.outputs = _json_messages(span, sc.GEN_AI_OUTPUT_MESSAGES, reading)
        reading.system_instructions = _instructions(a.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS))
        reading.tool_definitions = _tool_definitions_json(a.get(sc.GEN_AI_TOOL_DEFINITIONS), reading)
        if sc.GEN_AI_INPUT_MESSAGES not in a and sc.GEN_AI_OUTPUT_MESSAGES not in a:
            # The operation name with the older indexed messages (LiteLLM's OpenTelemetry callback writes these).
            _read_indexed_model_call(reading, span)
        _stamp_outputs(
            reading,
            span,
            model=a.get(sc.GEN_AI_RESPONSE_MODEL) or a.get(sc.GEN_AI_REQUEST_MODEL),
            provider=a.get(sc.GEN_AI_PROVIDER_NAME) or a.get(sc.GEN_AI_SYSTEM),
            input_tokens=a.get(sc.GEN_AI_USAGE_INPUT_TOKENS, a.get(sc.GEN_AI_USAGE_PROMPT_TOKENS)),
            output_tokens=a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, a.get(sc.GEN_AI_USAGE_COMPLETION_TOKENS)),
        )
        return reading
    if op in (sc.OP_INVOKE_AGENT, sc.OP_CREATE_AGENT):
        reading = SpanReading(kind="agent", agent_name=_str(a.get(sc.GEN_AI_AGENT_NAME)), problems=problems)
        reading.system_instructions = _instructions(a.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS))
        reading.tool_definitions = _tool_definitions_json(a.get(sc.GEN_AI_TOOL_DEFINITIONS), reading)
        _read_run_facts(reading, a)
        return reading
    return SpanReading(kind="other")


def _read_run_facts(reading: SpanReading, a: Mapping[str, Any]) -> None:
    """The application's outcome, the benchmark reference and the source, as our importer writes them.

    Values of the wrong type (a reward of "high", an index of "x") are left out and noted, never raised.
    """
    problems = reading.problems
    success = _attribute(a, sc.AGENT_EVAL_RUN_SUCCESS, as_bool, "a bool", problems)
    if success is not None:
        reward = _attribute(a, sc.AGENT_EVAL_RUN_REWARD, as_float, "a number", problems)
        reading.outcome = ApplicationOutcome(success=success, reward=reward)
    if sc.AGENT_EVAL_REFERENCE_ACTIONS in a or sc.AGENT_EVAL_REFERENCE_REWARD in a:
        actions: list[ExpectedAction] = []
        for obj in _json_list(a.get(sc.AGENT_EVAL_REFERENCE_ACTIONS), reading, sc.AGENT_EVAL_REFERENCE_ACTIONS):
            if isinstance(obj, Mapping) and isinstance(obj.get("name"), str):
                args = obj.get("arguments")
                actions.append(ExpectedAction(obj["name"], args if isinstance(args, Mapping) else {}))
        outputs = a.get(sc.AGENT_EVAL_REFERENCE_OUTPUTS)
        if outputs is not None and not isinstance(outputs, (list, tuple)):
            problems.append(f"{sc.AGENT_EVAL_REFERENCE_OUTPUTS} is a {type(outputs).__name__}, not a list")
            outputs = None
        reading.reference = Reference(
            reward=_attribute(a, sc.AGENT_EVAL_REFERENCE_REWARD, as_float, "a number", problems),
            actions=tuple(actions),
            outputs=tuple(str(o) for o in outputs or ()),
        )
    if sc.AGENT_EVAL_SOURCE_FILE in a:
        source_id = a.get(sc.AGENT_EVAL_SOURCE_ID)
        reading.source = RunSource(
            file=str(a[sc.AGENT_EVAL_SOURCE_FILE]),
            index=_attribute(a, sc.AGENT_EVAL_SOURCE_INDEX, as_int, "an integer", problems) or 0,
            id=str(source_id) if source_id is not None else None,
        )


def _attribute(
    a: Mapping[str, Any], key: str, convert: Callable[[object], T | None], kind: str, problems: list[str]
) -> T | None:
    """An attribute read by ``convert``; a value it refuses is noted (by its type, not its content) and left out."""
    value = a.get(key)
    if value is None:
        return None
    converted = convert(value)
    if converted is None:
        problems.append(f"{key} is not {kind} ({type(value).__name__})")
    return converted


# --- OpenInference ------------------------------------------------------------------------------------------


def _read_openinference(span: SpanRecord) -> SpanReading:
    a = span.attributes
    kind = str(a.get(sc.OPENINFERENCE_SPAN_KIND, "")).upper()
    if kind == "LLM":
        reading = SpanReading(kind="model")
        reading.inputs = _indexed_messages(span, sc.OI_INPUT_MESSAGES, "message.", reading)
        reading.outputs = _indexed_messages(span, sc.OI_OUTPUT_MESSAGES, "message.", reading)
        tools = []
        for _, entry in sorted(_indexed(a, sc.OI_TOOLS + ".").items()):
            schema = _json(entry.get("tool.json_schema"), reading, "llm.tools")
            if isinstance(schema, Mapping):
                try:
                    tools.append(ToolDefinition.from_openai(schema))
                except ValueError as exc:
                    reading.problems.append(f"llm.tools: {exc}")
        reading.tool_definitions = tuple(tools)
        _stamp_outputs(
            reading,
            span,
            model=a.get(sc.OI_MODEL_NAME),
            provider=a.get(sc.OI_PROVIDER) or a.get(sc.OI_SYSTEM),
            input_tokens=a.get(sc.OI_TOKEN_PROMPT),
            output_tokens=a.get(sc.OI_TOKEN_COMPLETION),
        )
        return reading
    if kind == "TOOL":
        reading = SpanReading(kind="tool")
        _fill_tool(
            reading,
            span,
            a.get(sc.OI_TOOL_NAME) or span.name,
            a.get(sc.OI_TOOL_ID) or a.get(sc.OI_TOOL_CALL_ID),
            a.get(sc.OI_INPUT_VALUE),
            a.get(sc.OI_OUTPUT_VALUE),
        )
        return reading
    if kind == "AGENT":
        return SpanReading(kind="agent", agent_name=_str(a.get(sc.OI_AGENT_NAME)) or span.name)
    return SpanReading(kind="other")


# --- OpenLLMetry and the older GenAI attribute names ------------------------------------------------------


def _read_openllmetry(span: SpanRecord) -> SpanReading:
    a = span.attributes
    kind = str(a.get(sc.TRACELOOP_SPAN_KIND, "")).lower()
    if kind == "tool":
        reading = SpanReading(kind="tool")
        payload = _json(a.get(sc.TRACELOOP_ENTITY_INPUT), reading, sc.TRACELOOP_ENTITY_INPUT)
        arguments: Any = None
        if isinstance(payload, Mapping):  # the SDK writes json.dumps({"args": [...], "kwargs": {...}})
            arguments = payload.get("kwargs", {} if "args" in payload else payload)
            positional = payload.get("args")
            if isinstance(positional, list) and positional and isinstance(arguments, Mapping):
                arguments = {**{f"arg{i}": v for i, v in enumerate(positional)}, **arguments}
        _fill_tool(
            reading,
            span,
            a.get(sc.TRACELOOP_ENTITY_NAME) or span.name,
            None,
            arguments,
            _json_text(a.get(sc.TRACELOOP_ENTITY_OUTPUT)),
        )
        return reading
    if kind == "agent":
        return SpanReading(kind="agent", agent_name=_str(a.get(sc.TRACELOOP_ENTITY_NAME)) or span.name)
    request_type = a.get(sc.LLM_REQUEST_TYPE)
    if request_type is not None and str(request_type).lower() not in sc.LLM_REQUEST_TYPES_CONVERSATION:
        # An embedding (or rerank) call: its gen_ai.prompt.N.content is the text embedded, not a conversation.
        return SpanReading(kind="other")
    if _has_prefix(a, sc.LEGACY_PROMPT_PREFIX) or _has_prefix(a, sc.LEGACY_COMPLETION_PREFIX):
        reading = SpanReading(kind="model")
        _read_indexed_model_call(reading, span)
        _stamp_outputs(
            reading,
            span,
            model=a.get(sc.GEN_AI_RESPONSE_MODEL) or a.get(sc.GEN_AI_REQUEST_MODEL),
            provider=a.get(sc.GEN_AI_SYSTEM),
            input_tokens=a.get(sc.GEN_AI_USAGE_PROMPT_TOKENS, a.get(sc.GEN_AI_USAGE_INPUT_TOKENS)),
            output_tokens=a.get(sc.GEN_AI_USAGE_COMPLETION_TOKENS, a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)),
        )
        return reading
    return SpanReading(kind="other")


def _read_indexed_model_call(reading: SpanReading, span: SpanRecord) -> None:
    """Indexed ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` messages and ``llm.request.functions.N.*``."""
    reading.inputs = _indexed_messages(span, sc.LEGACY_PROMPT_PREFIX.rstrip("."), "", reading)
    reading.outputs = _indexed_messages(span, sc.LEGACY_COMPLETION_PREFIX.rstrip("."), "", reading)
    tools = []
    for _, entry in sorted(_indexed(span.attributes, sc.LEGACY_FUNCTIONS_PREFIX).items()):
        if isinstance(entry.get("name"), str):
            params = _json(entry.get("parameters"), reading, sc.LEGACY_FUNCTIONS_PREFIX + "parameters")
            tools.append(
                ToolDefinition(
                    entry["name"], _str(entry.get("description")), params if isinstance(params, Mapping) else None
                )
            )
    reading.tool_definitions = reading.tool_definitions or tuple(tools)


# --- helpers ------------------------------------------------------------------------------------------------

_INDEX = re.compile(r"(\d+)\.(.+)")


def _has_prefix(a: Mapping[str, Any], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in a)


def _indexed(a: Mapping[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``{prefix}N.rest = v`` attributes as ``{N: {rest: v}}``."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in a.items():
        if key.startswith(prefix):
            match = _INDEX.fullmatch(key[len(prefix) :])
            if match:
                out.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return out


def _indexed_messages(span: SpanRecord, prefix: str, inner: str, reading: SpanReading) -> list[ChatMessage]:
    """Flattened messages: ``{prefix}.N.{inner}role``, ``...content``, ``...tool_calls.M.*``, ``...tool_call_id``."""
    messages = []
    for n, fields in sorted(_indexed(span.attributes, prefix + ".").items()):
        f = {k[len(inner) :]: v for k, v in fields.items() if k.startswith(inner)}
        try:
            role = normalize_role(f.get("role", "user"), field=f"{prefix}.{n}.{inner}role")
        except InputError as exc:
            reading.problems.append(str(exc))
            continue
        content = f.get("content")
        if content is None:  # OpenInference multi-part contents
            parts = _indexed(f, "contents.")
            texts = [p.get("message_content.text") for _, p in sorted(parts.items())]
            content = "\n".join(t for t in texts if isinstance(t, str)) or None
        calls = []
        for m, c in sorted(_indexed(f, "tool_calls.").items()):
            c = {k.removeprefix("tool_call."): v for k, v in c.items()}
            name = c.get("function.name", c.get("name"))
            if not isinstance(name, str):
                continue
            try:
                args, raw = parse_arguments(
                    c.get("function.arguments", c.get("arguments")), field=f"{prefix}.{n}.tool_calls.{m}", strict=False
                )
            except InputError as exc:  # arguments neither text nor an object (a number, a list)
                reading.problems.append(str(exc))
                args, raw = None, str(c.get("function.arguments", c.get("arguments")))
            calls.append(ToolCall(id=str(c.get("id") or ""), name=name, arguments=args, raw_arguments=raw))
        if role == "assistant" and content is None and not calls and isinstance(f.get("tool_calls"), str):
            reading.problems.append(f"{prefix}.{n}: tool_calls not flattened")
        messages.append(
            ChatMessage(
                role=role,
                content=content if isinstance(content, str) or content is None else json.dumps(content, default=str),
                tool_calls=tuple(calls),
                tool_call_id=_str(f.get("tool_call_id")),
                tool_name=_str(f.get("name")),
                finish_reason=_str(f.get("finish_reason")),
            )
        )
    return messages


def _json(value: Any, reading: SpanReading, name: str) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return loads(value)
    except ValueError:  # not JSON, or nested deeper than jsonfile.MAX_DEPTH
        reading.problems.append(f"{name} is not JSON")
        return None


def _json_list(value: Any, reading: SpanReading, name: str) -> list[Any]:
    """A JSON list attribute (or one object, as a list of one); anything else is a problem, read as empty."""
    data = _json(value, reading, name)
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, (list, tuple)):
        return list(data)
    if data is not None:
        reading.problems.append(f"{name} is not a JSON list")
    return []


def _json_text(value: Any) -> Any:
    """A value written as ``json.dumps(result)``: a JSON string decoded to its text; other JSON kept as written."""
    if isinstance(value, str):
        try:
            decoded = loads(value)
        except ValueError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _json_messages(span: SpanRecord, key: str, reading: SpanReading) -> list[ChatMessage]:
    out = []
    for i, obj in enumerate(_json_list(span.attributes.get(key), reading, key)):
        try:
            out.extend(parse_genai_messages(obj, field=f"{key}[{i}]"))
        except InputError as exc:
            reading.problems.append(str(exc))  # a message we cannot read is skipped; the rest of the span counts
    return out


def _instructions(value: Any) -> str | None:
    """``gen_ai.system_instructions``: a JSON list of parts (or, from some producers, plain text)."""
    if not isinstance(value, str):
        return None
    try:
        parts = loads(value)
    except ValueError:
        return value
    if isinstance(parts, list):
        texts = [p if isinstance(p, str) else p.get("content") if isinstance(p, Mapping) else None for p in parts]
        return "\n".join(t for t in texts if isinstance(t, str)) or None
    return parts if isinstance(parts, str) else value


def _tool_definitions_json(value: Any, reading: SpanReading) -> tuple[ToolDefinition, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        cached = _definitions_by_text.get(value)
        if cached is not None:
            return cached
    try:
        tools = ToolDefinition.parse_list(_json_list(value, reading, sc.GEN_AI_TOOL_DEFINITIONS))
    except ValueError as exc:
        reading.problems.append(f"{sc.GEN_AI_TOOL_DEFINITIONS}{exc}" if str(exc).startswith("[") else str(exc))
        return ()
    if isinstance(value, str) and tools:
        # Every trace of an agent carries the same definitions: parse them once, and hand out the same objects
        # (the schema validators are cached per definition object).
        if len(_definitions_by_text) > 256:
            _definitions_by_text.clear()
        _definitions_by_text[value] = tools
    return tools


_definitions_by_text: dict[str, tuple[ToolDefinition, ...]] = {}


def _fill_tool(reading: SpanReading, span: SpanRecord, name: Any, call_id: Any, arguments: Any, result: Any) -> None:
    reading.tool_name = _str(name)
    reading.tool_call_id = _str(call_id)
    try:
        args, _ = parse_arguments(arguments, field="arguments", strict=False) if arguments is not None else (None, None)
    except InputError as exc:  # arguments neither text nor an object (a number, a list)
        reading.problems.append(str(exc))
        args = None
    reading.tool_arguments = args
    reading.tool_result = result if isinstance(result, str) or result is None else json.dumps(result, default=str)
    error = span.attributes.get(sc.AGENT_EVAL_TOOL_ERROR)
    if span.failed:
        error = error or span.status_message or span.attributes.get(sc.ERROR_TYPE) or "tool error"
    reading.tool_error = str(error) if error is not None else None
    requested_by = span.attributes.get(sc.AGENT_EVAL_TOOL_REQUESTED_BY)
    if requested_by == "user":
        reading.tool_requested_by = "user"
    elif requested_by not in (None, "assistant"):
        reading.problems.append(f"{sc.AGENT_EVAL_TOOL_REQUESTED_BY} is not 'user' or 'assistant'")


def _stamp_outputs(
    reading: SpanReading, span: SpanRecord, *, model: Any, provider: Any, input_tokens: Any, output_tokens: Any
) -> None:
    """The model call's own facts go on its output messages (its answer): span, time, model, usage."""
    reading.outputs = [
        replace(
            m,
            start_time_ns=span.start_time_ns,
            end_time_ns=span.end_time_ns,
            span_id=span.span_id,
            model=_str(model),
            provider=_str(provider),
            input_tokens=input_tokens if isinstance(input_tokens, int) and i == 0 else None,
            output_tokens=output_tokens if isinstance(output_tokens, int) and i == 0 else None,
        )
        for i, m in enumerate(reading.outputs)
    ]
    system = [m.content for m in reading.inputs if m.role == "system" and m.content]
    if system and not reading.system_instructions:
        reading.system_instructions = "\n\n".join(system)
    reading.inputs = [m for m in reading.inputs if m.role != "system"]


def _conversation_id(a: Mapping[str, Any]) -> str | None:
    for key in (sc.GEN_AI_CONVERSATION_ID, sc.OI_SESSION_ID, "traceloop.association.properties.session_id"):
        if a.get(key):
            return str(a[key])
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
