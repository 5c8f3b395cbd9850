"""Steps as GenAI semantic-convention span names and attributes.

One mapping, used both by the live instrumentation API and by the import of recorded runs, so that a step
looks the same on a span whichever way it got there:

=============  ==========================  ==================================================================
step           span name                   attributes
=============  ==========================  ==================================================================
run            ``invoke_agent {agent}``    operation ``invoke_agent``, agent name, conversation id, system
                                           instructions, tool definitions, the application's outcome
user message   ``user_message``            ``gen_ai.input.messages`` (the one user message)
assistant      ``chat {model}``            operation ``chat``, model, provider, ``gen_ai.output.messages``,
                                           ``gen_ai.input.messages`` (see below), usage, finish reason
tool           ``execute_tool {name}``     operation ``execute_tool``, tool name, call id, arguments, result;
                                           span status ERROR and ``agent_eval.tool.error`` when it failed
=============  ==========================  ==================================================================

Every step span also has ``agent_eval.step.index`` and ``agent_eval.step.kind``. Messages are JSON in the
conventions' shapes: ``{"role", "parts": [{"type": "text", "content"}, {"type": "tool_call", "id", "name",
"arguments"}, {"type": "tool_call_response", "id", "response"}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.util.types import AttributeValue

from .. import semconv as sc
from ..model import (
    AgentRun,
    ApplicationOutcome,
    AssistantMessage,
    Reference,
    Step,
    ToolCall,
    ToolDefinition,
    ToolExecution,
    UserMessage,
)
from .content import ContentPolicy

Attributes = dict[str, AttributeValue]


# One encoder for every attribute: json.dumps with options builds a new encoder on each call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def dumps(value: Any) -> str:
    """JSON for an attribute; values JSON cannot hold are written as their ``str()`` rather than failing."""
    return _ENCODER.encode(value)


# --- messages in the conventions' shape ---------------------------------------------------------------------


def text_parts(text: str | None, policy: ContentPolicy) -> list[dict[str, Any]]:
    content = policy.text(text)
    return [{"type": "text", "content": content}] if content else []


def tool_call_part(call: ToolCall, policy: ContentPolicy) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "tool_call", "id": call.id, "name": call.name}
    if policy.capture:
        part["arguments"] = (
            policy.json_value(dict(call.arguments)) if call.arguments is not None else policy.text(call.raw_arguments)
        )
    return part


def step_message(step: Step, policy: ContentPolicy) -> dict[str, Any]:
    """A step as one GenAI message."""
    if isinstance(step, UserMessage):
        return {"role": "user", "parts": text_parts(step.content, policy)}
    if isinstance(step, AssistantMessage):
        parts = text_parts(step.content, policy) + [tool_call_part(c, policy) for c in step.tool_calls]
        message: dict[str, Any] = {"role": "assistant", "parts": parts}
        message["finish_reason"] = step.finish_reason or ("tool_call" if step.tool_calls else "stop")
        return message
    response: dict[str, Any] = {"type": "tool_call_response", "id": step.call_id}
    if policy.capture:
        response["response"] = policy.text(step.result if step.result is not None else step.error)
    return {"role": "tool", "parts": [response]}


def tool_definitions_json(tools: Iterable[ToolDefinition]) -> str:
    """Tool definitions in the conventions' flat shape ``{"type": "function", "name", "description", "parameters"}``."""
    out = []
    for tool in tools:
        entry: dict[str, Any] = {"type": "function", "name": tool.name}
        if tool.description is not None:
            entry["description"] = tool.description
        if tool.parameters is not None:
            entry["parameters"] = tool.parameters
        out.append(entry)
    return dumps(out)


# --- span attributes ----------------------------------------------------------------------------------------


def _step_common(step: Step) -> Attributes:
    return {sc.AGENT_EVAL_STEP_INDEX: step.index, sc.AGENT_EVAL_STEP_KIND: step.kind}


def user_attributes(step: UserMessage, policy: ContentPolicy) -> Attributes:
    attrs = _step_common(step)
    if policy.capture:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = dumps([step_message(step, policy)])
    return attrs


def chat_request_attributes(
    step: AssistantMessage,
    policy: ContentPolicy,
    *,
    input_messages: Sequence[Mapping[str, Any]] | None = None,
    tool_definitions: Sequence[ToolDefinition] = (),
) -> Attributes:
    """What is known of a model call when it starts; :func:`response_attributes` adds its answer."""
    attrs = _step_common(step)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_CHAT
    if step.provider:
        attrs[sc.GEN_AI_PROVIDER_NAME] = step.provider
    if step.model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = step.model
    if policy.capture and input_messages is not None:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = dumps(list(input_messages))
    if tool_definitions:
        attrs[sc.GEN_AI_TOOL_DEFINITIONS] = tool_definitions_json(tool_definitions)
    return attrs


def response_attributes(step: AssistantMessage, policy: ContentPolicy) -> Attributes:
    """What a model call produced: the output message, usage, finish reason."""
    attrs: Attributes = {}
    message = step_message(step, policy)
    attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [message["finish_reason"]]
    if policy.capture:
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = dumps([message])
    if any(c.arguments is None for c in step.tool_calls):
        attrs[sc.AGENT_EVAL_ARGUMENTS_INVALID] = True
    if step.input_tokens is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = step.input_tokens
    if step.output_tokens is not None:
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = step.output_tokens
    return attrs


def tool_attributes(step: ToolExecution, policy: ContentPolicy) -> Attributes:
    attrs = _step_common(step)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_EXECUTE_TOOL
    attrs[sc.GEN_AI_TOOL_NAME] = step.name
    attrs[sc.GEN_AI_TOOL_TYPE] = "function"
    if step.call_id:
        attrs[sc.GEN_AI_TOOL_CALL_ID] = step.call_id
    if policy.capture and step.arguments is not None:
        attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = dumps(policy.json_value(dict(step.arguments)))
    attrs.update(tool_result_attributes(step.result, step.error, policy))
    return attrs


def tool_result_attributes(result: str | None, error: str | None, policy: ContentPolicy) -> Attributes:
    attrs: Attributes = {}
    captured = policy.text(result)
    if captured is not None:
        attrs[sc.GEN_AI_TOOL_CALL_RESULT] = captured
    if error is not None:
        attrs[sc.ERROR_TYPE] = "tool_error"
        attrs[sc.AGENT_EVAL_TOOL_ERROR] = policy.text(error) or ""
    return attrs


def run_attributes(
    *,
    agent_name: str | None,
    conversation_id: str | None,
    system_instructions: str | None,
    tool_definitions: Sequence[ToolDefinition],
    policy: ContentPolicy,
    provider: str | None = None,
) -> Attributes:
    attrs: Attributes = {sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT}
    if agent_name:
        attrs[sc.GEN_AI_AGENT_NAME] = agent_name
    if provider:
        attrs[sc.GEN_AI_PROVIDER_NAME] = provider
    if conversation_id:
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation_id
    instructions = policy.text(system_instructions)
    if instructions:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = dumps([{"type": "text", "content": instructions}])
    if tool_definitions:
        attrs[sc.GEN_AI_TOOL_DEFINITIONS] = tool_definitions_json(tool_definitions)
    return attrs


def outcome_attributes(outcome: ApplicationOutcome) -> Attributes:
    attrs: Attributes = {sc.AGENT_EVAL_RUN_SUCCESS: outcome.success}
    if outcome.reward is not None:
        attrs[sc.AGENT_EVAL_RUN_REWARD] = outcome.reward
    return attrs


def reference_attributes(reference: Reference) -> Attributes:
    attrs: Attributes = {}
    if reference.reward is not None:
        attrs[sc.AGENT_EVAL_REFERENCE_REWARD] = reference.reward
    attrs[sc.AGENT_EVAL_REFERENCE_ACTIONS] = dumps(
        [{"name": a.name, "arguments": dict(a.arguments)} for a in reference.actions]
    )
    if reference.outputs:
        attrs[sc.AGENT_EVAL_REFERENCE_OUTPUTS] = list(reference.outputs)
    return attrs


def source_attributes(run: AgentRun) -> Attributes:
    if run.source is None:
        return {}
    attrs: Attributes = {sc.AGENT_EVAL_SOURCE_FILE: run.source.file, sc.AGENT_EVAL_SOURCE_INDEX: run.source.index}
    if run.source.id is not None:
        attrs[sc.AGENT_EVAL_SOURCE_ID] = run.source.id
    return attrs


def span_name(step: Step) -> str:
    if isinstance(step, UserMessage):
        return sc.SPAN_NAME_USER_MESSAGE
    if isinstance(step, AssistantMessage):
        return f"{sc.OP_CHAT} {step.model}" if step.model else sc.OP_CHAT
    return f"{sc.OP_EXECUTE_TOOL} {step.name}"


def run_span_name(agent_name: str | None) -> str:
    return f"{sc.OP_INVOKE_AGENT} {agent_name}" if agent_name else sc.OP_INVOKE_AGENT
