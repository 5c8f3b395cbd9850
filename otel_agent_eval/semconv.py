"""Every attribute, event and span name that otel-agent-eval reads or writes, in one place.

The ``GEN_AI_*`` names are the OpenTelemetry GenAI semantic conventions (checked against
``opentelemetry-semantic-conventions`` in the tests). ``AGENT_EVAL_*`` names are this project's own: the step
index, the user-turn span, the application's outcome, the benchmark reference, and (written by the evaluator)
the failure labels. Older and third-party names (``gen_ai.prompt.N.*``, OpenInference, OpenLLMetry) are read
only; they are listed at the bottom.
"""

from typing import Final

# --- OpenTelemetry GenAI semantic conventions -------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # deprecated predecessor of gen_ai.provider.name; read only
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"  # deprecated; read only
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"  # deprecated; read only
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
EVENT_GEN_AI_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
ERROR_TYPE: Final = "error.type"
# The exception event, written by hand (the SDK's record_exception would write the message and stack trace,
# which are content): only the type, and the redacted message when content is captured.
EVENT_EXCEPTION: Final = "exception"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"

# gen_ai.operation.name values
OP_CHAT: Final = "chat"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_GENERATE_CONTENT: Final = "generate_content"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CREATE_AGENT: Final = "create_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_EVALUATION: Final = "evaluation"  # our follow-up span of a judge's findings (the open proposal for evaluation spans)
MODEL_OPERATIONS: Final = frozenset({OP_CHAT, OP_TEXT_COMPLETION, OP_GENERATE_CONTENT})
SERVICE_NAME: Final = "service.name"  # a resource attribute: the agent of a run without an agent span

# --- otel-agent-eval's own names --------------------------------------------------------------------------
AGENT_EVAL_STEP_INDEX: Final = "agent_eval.step.index"
AGENT_EVAL_STEP_KIND: Final = "agent_eval.step.kind"  # "user" | "assistant" | "tool"
# The conventions have no operation for a user turn; a user message is its own span with this name.
SPAN_NAME_USER_MESSAGE: Final = "user_message"
AGENT_EVAL_TOOL_ERROR: Final = "agent_eval.tool.error"  # the tool's error message, when it failed
# Who asked for a tool execution: "user" in dual-control settings (τ² telecom); absent means the assistant.
AGENT_EVAL_TOOL_REQUESTED_BY: Final = "agent_eval.tool.requested_by"
# On imported chat spans: "new" when gen_ai.input.messages holds only the messages new since the previous
# answer (the whole history is the trace), not the full prompt.
AGENT_EVAL_INPUT_MESSAGES_SCOPE: Final = "agent_eval.input_messages.scope"
AGENT_EVAL_RUN_SUCCESS: Final = "agent_eval.run.success"  # what the application knows, when it knows it
AGENT_EVAL_RUN_REWARD: Final = "agent_eval.run.reward"
# On the first model call of a run an auto-instrumentor follows (no agent span around the loop): the span is
# the run's root and ends long before the run does, so the processor waits longer for the rest.
AGENT_EVAL_RUN_FOLLOWED: Final = "agent_eval.run.followed"
# A guard verdict recorded as a span of its own (the model call it judged had already ended): the step's span.
AGENT_EVAL_GUARD_STEP_SPAN_ID: Final = "agent_eval.guard.step.span_id"
SPAN_GUARD_VERDICT: Final = "guard_verdict"
AGENT_EVAL_SOURCE_FILE: Final = "agent_eval.source.file"
AGENT_EVAL_SOURCE_INDEX: Final = "agent_eval.source.index"
AGENT_EVAL_SOURCE_ID: Final = "agent_eval.source.id"
# A benchmark's answers, kept on the root span of imported runs so that nothing is lost on the way through
# a trace file. Reference-free evaluation never reads them.
AGENT_EVAL_REFERENCE_REWARD: Final = "agent_eval.reference.reward"
AGENT_EVAL_REFERENCE_ACTIONS: Final = "agent_eval.reference.actions"
AGENT_EVAL_REFERENCE_OUTPUTS: Final = "agent_eval.reference.outputs"
AGENT_EVAL_ARGUMENTS_INVALID: Final = "agent_eval.tool.call.arguments_invalid"

# Failure labels (written by the evaluator / processor)
AGENT_EVAL_FAILURE_MODE: Final = "agent_eval.failure.mode"
AGENT_EVAL_FAILURE_CATEGORY: Final = "agent_eval.failure.category"
AGENT_EVAL_FAILURE_OUTCOME: Final = "agent_eval.failure.outcome"
AGENT_EVAL_FAILURE_CRITIQUE: Final = "agent_eval.failure.critique"
AGENT_EVAL_FAILURE_EVIDENCE_KIND: Final = "agent_eval.failure.evidence_kind"  # structural | textual | judge
AGENT_EVAL_FAILURE_EVALUATOR: Final = "agent_eval.failure.evaluator"
AGENT_EVAL_FAILURE_DECIDES: Final = "agent_eval.failure.decides"  # on an event: it decided the outcome
# On every labelled span (each failure's span and the root's summary): the run's agent. A trace store that
# matches a search's tags on one span (Jaeger) finds "failures of mode M of agent A" with it.
AGENT_EVAL_AGENT_NAME: Final = "agent_eval.agent.name"
# Beside it, the run's agent as the processor's metrics name it (bounded: `other`, `redacted`, `unknown`): what a
# dashboard's series says, so that its link to the trace store finds that series' runs.
AGENT_EVAL_AGENT_LABEL: Final = "agent_eval.agent.label"
AGENT_EVAL_TRACE_OUTCOME: Final = "agent_eval.trace.outcome"
AGENT_EVAL_TRACE_FAILURE_SCORE: Final = "agent_eval.trace.failure_score"
AGENT_EVAL_TRACE_FAILURES: Final = "agent_eval.trace.failures"
AGENT_EVAL_TRACE_TERMINAL_FAILURES: Final = "agent_eval.trace.terminal_failures"
AGENT_EVAL_TRACE_SUSPICIONS: Final = "agent_eval.trace.suspicions"
AGENT_EVAL_EVALUATION_ERROR: Final = "agent_eval.evaluation.error"  # the spans went on unevaluated: why

# Content capture switch, as in the OpenTelemetry GenAI instrumentations.
ENV_CAPTURE_MESSAGE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# --- Read only: older GenAI names (also OpenLLMetry's) ----------------------------------------------------
LEGACY_PROMPT_PREFIX: Final = "gen_ai.prompt."  # gen_ai.prompt.N.role / .content / .tool_call_id
LEGACY_COMPLETION_PREFIX: Final = "gen_ai.completion."  # gen_ai.completion.N.role / .content / .tool_calls.M.*
LEGACY_FUNCTIONS_PREFIX: Final = "llm.request.functions."  # llm.request.functions.N.name / .parameters
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"  # workflow | task | agent | tool
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"
TRACELOOP_ENTITY_INPUT: Final = "traceloop.entity.input"
TRACELOOP_ENTITY_OUTPUT: Final = "traceloop.entity.output"
LLM_REQUEST_TYPE: Final = "llm.request.type"  # OpenLLMetry: chat | completion | embedding | rerank
# llm.request.type values of calls whose prompt is a conversation (an embedding's input is not a user turn).
LLM_REQUEST_TYPES_CONVERSATION: Final = frozenset({"chat", "completion"})

# --- Read only: OpenInference -------------------------------------------------------------------------------
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"  # LLM | TOOL | AGENT | CHAIN | ...
OI_INPUT_MESSAGES: Final = "llm.input_messages"  # llm.input_messages.N.message.role / .content / ...
OI_OUTPUT_MESSAGES: Final = "llm.output_messages"
OI_MODEL_NAME: Final = "llm.model_name"
OI_PROVIDER: Final = "llm.provider"
OI_SYSTEM: Final = "llm.system"
OI_TOOLS: Final = "llm.tools"  # llm.tools.N.tool.json_schema
OI_TOKEN_PROMPT: Final = "llm.token_count.prompt"
OI_TOKEN_COMPLETION: Final = "llm.token_count.completion"
OI_TOOL_NAME: Final = "tool.name"
# The id of the call a TOOL span executes: OpenInference writes tool.id (SpanAttributes.TOOL_ID); some
# producers write ToolCallAttributes.TOOL_CALL_ID, tool_call.id, instead.
OI_TOOL_ID: Final = "tool.id"
OI_TOOL_CALL_ID: Final = "tool_call.id"
OI_INPUT_VALUE: Final = "input.value"
OI_OUTPUT_VALUE: Final = "output.value"
OI_SESSION_ID: Final = "session.id"
OI_AGENT_NAME: Final = "agent.name"

# --- What makes a span worth reading ---------------------------------------------------------------------
# A span with none of these attribute keys (and no key under a prefix below) is read as no agent step and no
# agent by every dialect the readers know (``ingest.dialects.read_span``): evaluation keeps only its shape.
DIALECT_MARKERS: Final = frozenset(
    {AGENT_EVAL_STEP_KIND, GEN_AI_OPERATION_NAME, OPENINFERENCE_SPAN_KIND, TRACELOOP_SPAN_KIND, LLM_REQUEST_TYPE}
)
DIALECT_MARKER_PREFIXES: Final = (LEGACY_PROMPT_PREFIX,)
