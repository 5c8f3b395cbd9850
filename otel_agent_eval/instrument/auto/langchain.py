"""LangChain and LangGraph: agents, chat models and tools, recorded through LangChain's callbacks.

>>> from otel_agent_eval.instrument.auto.langchain import LangChainInstrumentor
>>> LangChainInstrumentor().instrumentation_dependencies()
('langchain-core >= 0.3',)

``LangChainInstrumentor().instrument(tracer_provider=..., content=ContentPolicy(...))``, or
``opentelemetry-instrument python app.py`` (entry point ``otel_agent_eval_langchain``), or
``otel_agent_eval.instrument()`` for every instrumentor whose library is installed. It adds one callback
handler to every LangChain callback manager (as OpenInference's LangChain instrumentor does), so every
``invoke`` / ``ainvoke`` / ``stream`` of a graph, chain, chat model or tool is seen with no change to the
application; ``.uninstrument()`` stops it. Without the global patch, pass :func:`callback_handler` in a run's
``config={"callbacks": [...]}``.

What is recorded:

* the outermost chain of an invocation -- a LangGraph graph (``create_react_agent`` and any compiled
  ``StateGraph``), an ``AgentExecutor``, an LCEL chain -- is the run: an ``invoke_agent {name}`` span, with
  LangGraph's ``thread_id`` as ``gen_ai.conversation.id``; an exception out of it marks it failed (LangGraph's
  interrupts do not). The chains, nodes and runnables inside it have no span of their own: their model calls
  and tools are steps of the run. Inside an explicit :func:`~otel_agent_eval.instrument.agent_run`, the graph's
  steps are steps of that run instead;
* each chat model call is a ``chat {model}`` span: the input messages (system, user, assistant with its tool
  calls, tool results), the tools bound to the model, the answer (text, tool calls -- malformed ones too),
  finish reason, token usage, the response id; provider and model from LangChain's ``ls_provider`` /
  ``ls_model_name``. A failed call (a rate limit...) marks the span failed and propagates unchanged;
* each tool run is an ``execute_tool {name}`` span with the arguments, the result and the model's tool call
  id when LangChain knows it (a tool invoked with a ``ToolCall``, as LangGraph's ``ToolNode`` does; without
  one the reader matches the span by name and order); an exception (a validation error of the model's
  arguments included) or a ``ToolMessage`` with status ``error`` is the tool's error;
* a graph, chain or model called inside a tool (a sub-agent) is a run of its own, under the tool's span;
* a chat model called on its own (an agent loop written by hand around ``model.invoke``) is recorded as the
  SDK instrumentors record SDK calls: successive calls of one conversation make one run (see
  :mod:`..conversation`); a tool called on its own joins that run.

Model and tool spans carry no ``agent_eval.step.index``: the conversation is read back from the model calls'
input messages, and each tool span is matched to the model's call by its id (:mod:`otel_agent_eval.ingest.spans`).

Combined with the OpenAI and Anthropic instrumentors (``otel_agent_eval.instrument()`` turns on all three),
each model call is recorded once: while this handler records a chat model's call, the SDK instrumentors
leave the SDK request it makes alone.

Not covered: legacy completion LLMs (``on_llm_start``: prompts, not messages), retrievers, embeddings,
LangGraph nodes that call an SDK directly (the SDK instrumentors record those as runs of their own). Do not also pass
:func:`callback_handler` while instrumented, nor run OpenInference's or OpenLLMetry's LangChain instrumentor
in the same process: each would record the same steps again.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from uuid import UUID

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider
from wrapt import wrap_function_wrapper

from ... import semconv as sc
from ...ingest.messages import ROLE_ALIASES, ChatMessage, content_text, parse_tool_call
from ...model import ToolCall, ToolDefinition, ToolExecution
from .. import attributes as attrs
from .. import guard
from ..api import AgentRunRecorder, current_run, get_tracer
from ..content import ContentPolicy, default_policy
from ..conversation import (
    FrameworkCall,
    ModelCall,
    followed_run,
    genai_message,
    start_model_call,
)
from ..recorders import ToolRecorder

__all__ = ["LangChainInstrumentor", "callback_handler", "handler_class"]

# LangChain's ls_provider values whose GenAI provider name is spelled otherwise.
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "google_genai": "gcp.gen_ai",
    "google_vertexai": "gcp.vertex_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
}
# LangChain message types (``BaseMessage.type``, chunks' without the ``MessageChunk`` suffix) -> roles.
_ROLES = {"system": "system", "developer": "system", "human": "user", "ai": "assistant", "tool": "tool"}
# LangGraph's control-flow exceptions (an interrupt waiting for a human, a command to the parent graph).
_CONTROL_FLOW = frozenset({"GraphBubbleUp", "GeneratorExit"})  # GeneratorExit: a stream left early


class LangChainInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Records LangChain / LangGraph runs, model calls and tools as agent steps, through LangChain's callbacks."""

    _handler: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("langchain-core >= 0.3",)

    def _instrument(self, **kwargs: Any) -> None:
        handler = callback_handler(tracer_provider=kwargs.get("tracer_provider"), content=kwargs.get("content"))
        LangChainInstrumentor._handler = handler
        wrap_function_wrapper("langchain_core.callbacks", "BaseCallbackManager.__init__", _ManagerInit(handler))

    def _uninstrument(self, **kwargs: Any) -> None:
        from langchain_core.callbacks import BaseCallbackManager

        handler, LangChainInstrumentor._handler = LangChainInstrumentor._handler, None
        if handler is not None:
            handler.disable()  # managers made meanwhile still hold it: it records no new run
        unwrap(BaseCallbackManager, "__init__")


class _ManagerInit:
    """Wraps ``BaseCallbackManager.__init__``: every manager gets the handler, inherited by its children."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def __call__(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
        wrapped(*args, **kwargs)
        try:
            if self._handler not in instance.inheritable_handlers:
                instance.add_handler(self._handler, inherit=True)
        except Exception as exc:
            guard.log_failure("a LangChain callback manager", exc)


def callback_handler(tracer_provider: TracerProvider | None = None, content: ContentPolicy | None = None) -> Any:
    """A LangChain callback handler that records what it sees (needs ``langchain-core``).

    For one invocation without instrumenting the process: ``graph.invoke(inputs, config={"callbacks":
    [callback_handler()]})``. ``content`` overrides the process-wide content policy.
    """
    return handler_class()(get_tracer(tracer_provider), content)


@functools.cache
def handler_class() -> type[Any]:
    """The handler's class: :class:`_Callbacks` on LangChain's ``BaseCallbackHandler`` (built on first use, so
    that this module imports without LangChain)."""
    from langchain_core.callbacks import BaseCallbackHandler

    class OtelAgentEvalCallbackHandler(_Callbacks, BaseCallbackHandler):
        """Records LangChain runs as agent-step spans (see :mod:`otel_agent_eval.instrument.auto.langchain`)."""

    return OtelAgentEvalCallbackHandler


# --- what the handler keeps per LangChain run -------------------------------------------------------------


@dataclass
class _Run:
    """An agent run steps are recorded in: one this handler started (``span`` is its ``invoke_agent`` span,
    ended with the chain that started it), or one it joined (an explicit ``agent_run``, a followed conversation)."""

    recorder: AgentRunRecorder
    policy: ContentPolicy
    span: Span | None = None


@dataclass
class _Entry:
    """A LangChain run in progress. ``run``: the agent run its model calls and tools are steps of."""

    run: _Run | None
    owns_run: bool = False  # ending this LangChain run ends run.span
    call: ModelCall | None = None
    framework_call: FrameworkCall | None = None
    tool: ToolRecorder | None = None
    tool_call_id: str | None = None


F = TypeVar("F", bound=Callable[..., None])


def _guarded(what: str) -> Callable[[F], F]:
    """A callback that logs its failures (without content) instead of raising them into LangChain."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                method(*args, **kwargs)
            except Exception as exc:
                guard.log_failure(what, exc)

        return cast(F, wrapper)

    return decorate


class _Callbacks:
    """The callback methods. None ever raises into LangChain: failures are logged and the application goes on."""

    run_inline = True  # called in the caller's context, also for async runs: the SDK call sees the marker
    raise_error = False

    def __init__(self, tracer: Tracer, policy: ContentPolicy | None = None) -> None:
        self._tracer = tracer
        self._content = policy
        self._lock = threading.Lock()
        self._entries: dict[UUID, _Entry] = {}
        self._enabled = True

    def disable(self) -> None:
        """Record no new run (the LangChain runs in progress still end their spans)."""
        self._enabled = False

    # -- chains: the run

    @_guarded("a LangChain chain start")
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._enabled:
            return
        parent = self._get(parent_run_id)
        if parent is not None and parent.tool is None:
            self._put(run_id, _Entry(parent.run))  # a chain inside the run: no span, its steps are the run's
            return
        if parent is None and (explicit := current_run()) is not None:
            self._put(run_id, _Entry(_Run(explicit, explicit.policy)))  # inside an agent_run: its steps
            return
        # The outermost chain, or one a tool runs (a sub-agent, under the tool's span).
        tool_span = parent.tool.span if parent is not None and parent.tool is not None else None
        self._put(run_id, _Entry(self._start_run(_run_name(serialized, kwargs), metadata, tool_span), owns_run=True))

    @_guarded("the end of a LangChain chain")
    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        entry = self._pop(run_id)
        if entry is not None and entry.owns_run:
            self._end_run(entry, None)

    @_guarded("the error of a LangChain chain")
    def on_chain_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        entry = self._pop(run_id)
        if entry is not None and entry.owns_run:
            self._end_run(entry, error)

    # -- chat models

    @_guarded("a LangChain model call")
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._enabled:
            return
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = _text(metadata.get("ls_model_name")) or _text(params.get("model")) or _text(params.get("model_name"))
        provider = _provider(metadata.get("ls_provider"))
        chat = [m for m in (_chat_message(m) for m in (messages[0] if messages else ())) if m is not None]
        tools = _tool_definitions(params.get("tools"))
        parent = self._get(parent_run_id)
        entry = _Entry(None)
        if parent is None:
            # Called on its own: a step of the explicit run, of the conversation it continues, or of a new run.
            call = start_model_call(
                self._tracer,
                provider=provider or "",
                model=model,
                messages=chat,
                tool_definitions=tools,
                policy=self._content,
            )
        else:
            run = parent.run
            if parent.tool is not None or run is None:  # a model a tool calls: a sub-agent's run, under the tool
                run = self._start_run(None, metadata, parent.tool.span if parent.tool is not None else None)
                entry.run, entry.owns_run = run, True
            with _under(run.recorder.span):
                recorder = run.recorder.start_chat(
                    model,
                    provider=provider,
                    input_messages=[genai_message(m) for m in chat],
                    tool_definitions=tools,
                    step_index=False,
                )
            call = ModelCall(recorder, None, ())
        entry.call = call
        self._put(run_id, entry)
        entry.framework_call = FrameworkCall()  # the SDK request LangChain makes now is this same step

    @_guarded("a LangChain model answer")
    def on_llm_end(self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        entry = self._pop(run_id)
        if entry is None or entry.call is None:
            return
        try:
            try:
                _finish(entry.call, response)
            except Exception as exc:
                guard.log_failure("a LangChain model answer", exc)
                entry.call.end()
        finally:
            self._end_model(entry, None)

    @_guarded("a LangChain model error")
    def on_llm_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        entry = self._pop(run_id)
        if entry is None or entry.call is None:
            return
        try:
            entry.call.fail(error)
        finally:
            self._end_model(entry, error)

    def _end_model(self, entry: _Entry, error: BaseException | None) -> None:
        if entry.framework_call is not None:
            entry.framework_call.end()  # may be another context than the start (async): the marker ends anyway
        if entry.owns_run:
            self._end_run(entry, error)

    # -- tools

    @_guarded("a LangChain tool call")
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._enabled:
            return
        name = _text(kwargs.get("name")) or _text((serialized or {}).get("name")) or "tool"
        # The model's call id: recent langchain-core passes it here; older versions only in the ToolMessage result.
        call_id = _text(kwargs.get("tool_call_id"))
        parent = self._get(parent_run_id)
        run = parent.run if parent is not None else None
        if parent is None and (joined := current_run() or followed_run(name)) is not None:
            run = _Run(joined, joined.policy)  # called on its own: a step of the explicit or followed run
        policy = run.policy if run is not None else self._policy()
        step = ToolExecution(
            index=0, name=name, call_id=call_id, arguments=dict(inputs) if isinstance(inputs, Mapping) else None
        )
        conversation_id = run.recorder.conversation_id if run is not None else None

        def build(p: ContentPolicy) -> attrs.Attributes:
            return attrs.tool_attributes(step, p, conversation_id=conversation_id)

        attributes = guard.attributes("a tool call", build, policy)
        # No step index: the reader matches the span to the model's call by its id.
        attributes.pop(sc.AGENT_EVAL_STEP_INDEX, None)
        attributes.pop(sc.AGENT_EVAL_STEP_KIND, None)
        parent_span = run.recorder.span if run is not None else None
        span = self._tracer.start_span(
            attrs.span_name(step),
            context=trace.set_span_in_context(parent_span) if parent_span is not None else None,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._put(run_id, _Entry(run, tool=ToolRecorder(span, policy), tool_call_id=call_id))

    @_guarded("a LangChain tool result")
    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        entry = self._pop(run_id)
        if entry is None or entry.tool is None:
            return
        try:
            self._set_call_id(entry, getattr(output, "tool_call_id", None))
            if getattr(output, "type", None) == "tool":  # a ToolMessage: its content is the result
                text = _content(getattr(output, "content", None))
                if getattr(output, "status", None) == "error":
                    entry.tool.set_error(text or "tool error", text)
                else:
                    entry.tool.set_result(text if text is not None else "")
            else:
                entry.tool.set_result(output)
        finally:
            self._end_tool(entry, None)

    @_guarded("a LangChain tool error")
    def on_tool_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        entry = self._pop(run_id)
        if entry is None or entry.tool is None:
            return
        try:
            self._set_call_id(entry, kwargs.get("tool_call_id"))
        finally:
            self._end_tool(entry, error)

    def _set_call_id(self, entry: _Entry, call_id: Any) -> None:
        """The call id, when LangChain names it only at the end (versions that do not pass it at the start)."""
        if entry.tool is not None and not entry.tool_call_id and isinstance(call_id, str) and call_id:
            entry.tool.span.set_attribute(sc.GEN_AI_TOOL_CALL_ID, call_id)

    def _end_tool(self, entry: _Entry, error: BaseException | None) -> None:
        if entry.tool is None:
            return
        if error is not None:
            guard.record_failure(entry.tool.span, error, entry.run.policy if entry.run else self._policy(), tool=True)
        entry.tool.span.end()

    # -- runs

    def _policy(self) -> ContentPolicy:
        return self._content or default_policy()

    def _start_run(self, name: str | None, metadata: Mapping[str, Any] | None, parent: Span | None) -> _Run:
        """A new agent run: an ``invoke_agent`` span under ``parent`` (a tool's), or under the current span."""
        policy = self._policy()
        thread = (metadata or {}).get("thread_id")  # LangGraph's conversation thread
        conversation_id = str(thread) if isinstance(thread, (str, int)) and thread != "" else None

        def build(p: ContentPolicy) -> attrs.Attributes:
            return attrs.run_attributes(
                agent_name=name,
                conversation_id=conversation_id,
                system_instructions=None,
                tool_definitions=(),
                policy=p,
            )

        span = self._tracer.start_span(
            attrs.run_span_name(name),
            context=trace.set_span_in_context(parent) if parent is not None else None,
            kind=SpanKind.INTERNAL,
            attributes=guard.attributes("an agent run", build, policy),
            record_exception=False,
            set_status_on_exception=False,
        )
        return _Run(AgentRunRecorder(self._tracer, span, policy, None, conversation_id), policy, span)

    def _end_run(self, entry: _Entry, error: BaseException | None) -> None:
        run = entry.run
        if run is None or run.span is None:
            return
        if error is not None and not _control_flow(error):
            guard.record_failure(run.span, error, run.policy)
        run.span.end()

    # -- the LangChain runs in progress

    def _get(self, run_id: UUID | None) -> _Entry | None:
        if run_id is None:
            return None
        with self._lock:
            return self._entries.get(run_id)

    def _put(self, run_id: UUID, entry: _Entry) -> None:
        with self._lock:
            self._entries[run_id] = entry

    def _pop(self, run_id: UUID) -> _Entry | None:
        with self._lock:
            return self._entries.pop(run_id, None)


class _under:
    """Makes ``span`` current for a moment (``AgentRunRecorder.start_chat`` parents its span on the current
    span when that is in the run's trace): the model call's span is the run span's child, not the child of
    whatever span the application had current when it invoked the graph."""

    def __init__(self, span: Span | None) -> None:
        self._span = span
        self._token: Token[Context] | None = None

    def __enter__(self) -> None:
        if self._span is not None:
            self._token = context.attach(trace.set_span_in_context(self._span))

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            context.detach(self._token)


# --- LangChain objects read -------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _provider(value: Any) -> str | None:
    name = _text(value)
    return _PROVIDERS.get(name, name) if name else None


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str | None:
    name = _text(kwargs.get("name"))
    if name is None and isinstance(serialized, Mapping):
        name = _text(serialized.get("name"))
        ids = serialized.get("id")
        if name is None and isinstance(ids, list) and ids:
            name = _text(ids[-1])
    return name


def _control_flow(error: BaseException) -> bool:
    return any(cls.__name__ in _CONTROL_FLOW for cls in type(error).__mro__)


def _content(content: Any) -> str | None:
    """A message's content as text: a string, or the text of its content blocks."""
    if content is None or isinstance(content, str):
        return content
    try:
        return content_text(content if isinstance(content, list) else [content], field="content")
    except Exception:
        return str(content)


def _calls(message: Any) -> list[ToolCall]:
    """An AI message's tool calls, and the ones LangChain could not parse (their arguments kept as text)."""
    out = []
    raw = [
        *({"id": c.get("id"), "name": c.get("name"), "arguments": c.get("args")} for c in message.tool_calls or ()),
        *(
            {"id": c.get("id"), "name": c.get("name"), "arguments": c.get("args")}
            for c in getattr(message, "invalid_tool_calls", None) or ()
        ),
    ]
    for i, call in enumerate(raw):
        try:
            out.append(parse_tool_call(call, field=f"tool_calls[{i}]", strict=False))
        except Exception as exc:  # a call without a name
            guard.log_failure(f"tool call {i}", exc)
    return out


def _chat_message(message: Any) -> ChatMessage | None:
    """A LangChain message (``SystemMessage``, ``HumanMessage``, ``AIMessage``, ``ToolMessage``...) as a
    :class:`ChatMessage`; ``None`` for one of no known role."""
    kind = getattr(message, "type", None)
    if not isinstance(kind, str):
        return None
    kind = kind.lower().removesuffix("messagechunk")
    role = _ROLES.get(kind)
    if kind == "chat":
        role = ROLE_ALIASES.get(str(getattr(message, "role", "")).lower())
    elif kind == "function":
        role = "tool"
    if role is None:
        return None
    content = _content(getattr(message, "content", None))
    if role == "assistant":
        return ChatMessage(role="assistant", content=content or None, tool_calls=tuple(_calls(message)))
    if role == "tool":
        return ChatMessage(
            role="tool",
            content=content,
            tool_call_id=_text(getattr(message, "tool_call_id", None)),
            tool_name=_text(getattr(message, "name", None)),
            error=getattr(message, "status", None) == "error",
        )
    return ChatMessage(role=role, content=content)


def _tool_definitions(value: Any) -> tuple[ToolDefinition, ...]:
    """The tools bound to the model: OpenAI function dicts, or Anthropic's ``input_schema`` shape."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    out = []
    for tool in value:
        if not isinstance(tool, Mapping):
            continue
        if "input_schema" in tool and "parameters" not in tool:
            tool = {
                "name": tool.get("name"),
                "description": tool.get("description"),
                "parameters": tool["input_schema"],
            }
        try:
            if tool.get("type", "function") == "function":
                out.append(ToolDefinition.from_openai(tool))
        except ValueError:
            continue  # a provider's built-in tool (web search, ...): not a function the agent calls
    return tuple(out)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _finish(call: ModelCall, response: Any) -> None:
    """Record an ``LLMResult``'s first generation: the AI message, its tool calls, usage, finish reason."""
    generations = getattr(response, "generations", None) or []
    generation = generations[0][0] if generations and generations[0] else None
    if generation is None:
        call.end()
        return
    message = getattr(generation, "message", None)
    llm_output = getattr(response, "llm_output", None) or {}
    info = getattr(generation, "generation_info", None) or {}
    metadata = getattr(message, "response_metadata", None) or {}
    usage = getattr(message, "usage_metadata", None) or {}
    token_usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
    if not isinstance(token_usage, Mapping):
        token_usage = {}
    input_tokens = _int(usage.get("input_tokens"))
    output_tokens = _int(usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        input_tokens = _int(token_usage.get("prompt_tokens", token_usage.get("input_tokens")))
        output_tokens = _int(token_usage.get("completion_tokens", token_usage.get("output_tokens")))
    finish_reason = info.get("finish_reason") or metadata.get("finish_reason") or metadata.get("stop_reason")
    call.finish(
        content=_content(getattr(message, "content", None)) if message is not None else _text(generation.text),
        tool_calls=_calls(message) if message is not None else (),
        finish_reason=_text(finish_reason),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=_text(metadata.get("model_name")) or _text(metadata.get("model")) or _text(llm_output.get("model_name")),
        response_id=_text(metadata.get("id")),
    )
