"""Steps as GenAI semantic-convention span names and attributes.

One mapping, used both by the live instrumentation API and by the import of recorded runs, so that a step
looks the same on a span whichever way it got there:

=============  ==========================  ==================================================================
step           span name                   attributes
=============  ==========================  ==================================================================
run            ``invoke_agent {agent}``    operation ``invoke_agent``, agent name, conversation id, system
                                           instructions, tool definitions, the application's outcome
user message   ``user_message``            ``gen_ai.input.messages`` (the one user message; the user's own
                                           tool calls are its ``tool_call`` parts)
assistant      ``chat {model}``            operation ``chat``, model, provider, ``gen_ai.output.messages``,
                                           ``gen_ai.input.messages`` (see below), usage, finish reason
tool           ``execute_tool {name}``     operation ``execute_tool``, tool name, call id, arguments, result;
                                           span status ERROR and ``agent_eval.tool.error`` when it failed;
                                           ``agent_eval.tool.requested_by=user`` for a tool the user ran
=============  ==========================  ==================================================================

Every step span also has ``agent_eval.step.index`` and ``agent_eval.step.kind``; model and tool spans of a run
with a conversation id carry ``gen_ai.conversation.id`` too. Messages are JSON in the conventions' shapes
(:mod:`.messages`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.util.types import AttributeValue

from .. import semconv as sc
from ..model import (
    AgentRun,
    ApplicationOutcome,
    AssistantMessage,
    Reference,
    Step,
    ToolDefinition,
    ToolExecution,
    UserMessage,
)
from .content import ContentPolicy
from .messages import dumps, redact_messages, step_message, tool_definitions_json

Attributes = dict[str, AttributeValue]


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
    conversation_id: str | None = None,
) -> Attributes:
    """What is known of a model call when it starts; :func:`response_attributes` adds its answer.

    ``input_messages`` are the caller's own (GenAI or OpenAI-style): the policy is applied to their content.
    """
    attrs = _step_common(step)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_CHAT
    if step.provider:
        attrs[sc.GEN_AI_PROVIDER_NAME] = step.provider
    if step.model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = step.model
    if conversation_id:
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation_id
    if policy.capture and input_messages is not None:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = dumps(redact_messages(input_messages, policy))
    if tool_definitions:
        attrs[sc.GEN_AI_TOOL_DEFINITIONS] = tool_definitions_json(tool_definitions)
    return attrs


def response_attributes(step: AssistantMessage, policy: ContentPolicy) -> Attributes:
    """What a model call produced: the output message, usage, finish reason.

    The output message holds the answer's reasoning, when the step has it apart, as a GenAI ``reasoning`` part
    ahead of its text (content like the text: through the policy, left out when content is not captured), so
    that a span read back gives the step its ``reasoning``.

    ``gen_ai.response.finish_reasons`` is the provider's own value, and absent when the caller gave none; the
    output message carries it mapped to the conventions' enum (see :func:`.messages.finish_reason`).
    """
    attrs: Attributes = {}
    if step.finish_reason:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [step.finish_reason]
    if policy.capture:
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = dumps([step_message(step, policy)])
    if any(c.arguments is None for c in step.tool_calls):
        attrs[sc.AGENT_EVAL_ARGUMENTS_INVALID] = True
    if step.input_tokens is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = step.input_tokens
    if step.output_tokens is not None:
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = step.output_tokens
    return attrs


def tool_attributes(step: ToolExecution, policy: ContentPolicy, *, conversation_id: str | None = None) -> Attributes:
    attrs = _step_common(step)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_EXECUTE_TOOL
    attrs[sc.GEN_AI_TOOL_NAME] = step.name
    attrs[sc.GEN_AI_TOOL_TYPE] = "function"
    if step.call_id:
        attrs[sc.GEN_AI_TOOL_CALL_ID] = step.call_id
    if conversation_id:
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation_id
    if step.requested_by == "user":  # absent means the assistant, the usual case
        attrs[sc.AGENT_EVAL_TOOL_REQUESTED_BY] = "user"
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


def reference_attributes(reference: Reference, policy: ContentPolicy) -> Attributes:
    """A benchmark's answers. Expected arguments and outputs are content: the policy applies to them."""
    attrs: Attributes = {}
    if reference.reward is not None:
        attrs[sc.AGENT_EVAL_REFERENCE_REWARD] = reference.reward
    actions: list[dict[str, Any]] = []
    for action in reference.actions:
        entry: dict[str, Any] = {"name": action.name}
        if policy.capture:
            entry["arguments"] = policy.json_value(dict(action.arguments))
        actions.append(entry)
    attrs[sc.AGENT_EVAL_REFERENCE_ACTIONS] = dumps(actions)
    outputs = [text for text in (policy.text(o) for o in reference.outputs) if text is not None]
    if outputs:
        attrs[sc.AGENT_EVAL_REFERENCE_OUTPUTS] = outputs
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
