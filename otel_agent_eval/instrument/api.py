"""Record an agent's steps as spans, for agent code with no framework.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
>>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
>>> exporter = InMemorySpanExporter()
>>> provider = TracerProvider()
>>> provider.add_span_processor(SimpleSpanProcessor(exporter))
>>> from otel_agent_eval.instrument import agent_run, tool
>>> @tool
... def get_order(order_id: str) -> dict:
...     return {"order_id": order_id, "status": "delivered"}
>>> with agent_run("support", conversation_id="c-42", tracer_provider=provider) as run:
...     run.user_message("Where is my order #W1?")
...     with run.chat(model="gpt-4o", provider="openai") as call:
...         call.set_response(tool_calls=[{"id": "call_1", "name": "get_order", "arguments": {"order_id": "#W1"}}])
...     result = run.execute(call.tool_calls[0], get_order)
...     with run.chat(model="gpt-4o", provider="openai") as call:
...         call.set_response(content="It was delivered.")
...     run.set_outcome(success=True)
>>> [s.name for s in exporter.get_finished_spans()]
['user_message', 'chat gpt-4o', 'execute_tool get_order', 'chat gpt-4o', 'invoke_agent support']

A tool function decorated with :func:`~otel_agent_eval.instrument.tool` records an ``execute_tool`` span
whenever it runs inside an :func:`agent_run`, and is a plain call outside one. Its span gets the call id of
the latest model answer's unanswered call of that tool (in order), so that it links to the model's call.

Errors in the instrumentation itself are logged (without content) and never raised into the agent; the
agent's own exceptions propagate unchanged. Exceptions are recorded on the spans by hand, through the
content policy, never with the SDK's message and stack trace.

**Threads.** The current run is held in a context variable. A thread of a ``ThreadPoolExecutor`` does not
inherit it: there, pass the run and call ``run.execute`` / ``run.tool`` (their spans are parented on the
run's span even where no span is current), or submit ``contextvars.copy_context().run`` with the function,
which carries the run (and the current span) so that ``@tool`` functions record their spans.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Literal, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider

from .. import __version__
from .. import semconv as sc
from ..model import ApplicationOutcome, AssistantMessage, ToolCall, ToolDefinition, ToolExecution, UserMessage
from . import attributes as attrs
from . import guard
from .content import ContentPolicy, default_policy
from .recorders import ChatRecorder, ToolRecorder, parse_calls

__all__ = ["AgentRunRecorder", "ChatRecorder", "ToolRecorder", "agent_run", "current_run"]

R = TypeVar("R")
Requester = Literal["assistant", "user"]

_current_run: ContextVar[AgentRunRecorder | None] = ContextVar("otel_agent_eval_current_run", default=None)
# The run whose tool is executing in this context: a @tool function called inside it is that same step, not a
# second one. Keyed to the run, so that a sub-agent's run inside a tool still records its own tools.
_tool_owner: ContextVar[AgentRunRecorder | None] = ContextVar("otel_agent_eval_tool_owner", default=None)


def get_tracer(tracer_provider: TracerProvider | None = None) -> Tracer:
    return trace.get_tracer("otel_agent_eval", __version__, tracer_provider=tracer_provider)


def current_run() -> AgentRunRecorder | None:
    """The run being recorded in this context, if any."""
    return _current_run.get()


def _restore(var: ContextVar[AgentRunRecorder | None], token: Token[AgentRunRecorder | None]) -> None:
    """Undo ``var.set``; never raises, since it runs while the application's own exception may be propagating."""
    try:
        var.reset(token)
    except ValueError:  # the block was left in another context than it was entered in
        var.set(None if token.old_value is Token.MISSING else token.old_value)


def _call_arguments(call: ToolCall) -> dict[str, Any]:
    if call.arguments is None:
        raw = call.raw_arguments or ""
        detail = repr(raw[:200]) + ("..." if len(raw) > 200 else "")
        raise ValueError(f"tool call {call.id or '(no id)'} {call.name}: arguments are not valid JSON: {detail}")
    return dict(call.arguments)


class AgentRunRecorder:
    """The run being recorded: its root span, and the methods that record its steps.

    Its methods may be called from several threads (tools run in a pool): step indices and the matching of
    tool executions to the model's calls are kept under a lock.
    """

    def __init__(
        self,
        tracer: Tracer,
        span: Span | None,
        policy: ContentPolicy,
        provider: str | None,
        conversation_id: str | None = None,
    ):
        self.tracer = tracer
        self.span: Span | None = span
        """The run's root span. ``None`` for a run an auto-instrumentor follows without one (see
        :mod:`.conversation`): its first model call's span becomes the root."""
        self.conversation_id = conversation_id
        self.implicit_root = span is None
        """Whether the run's first model call becomes its root (a run an auto-instrumentor follows)."""
        self.own_trace = False
        self.last_model_span: Span | None = None
        """The span of the run's latest model call (started with ``start_chat``)."""
        """For such a run: whether its first call starts a trace of its own even where a span is current."""
        self._policy = policy
        self._provider = provider
        self._trace_id = span.get_span_context().trace_id if span is not None else 0
        # Re-entrant: a stream proxy collected by the garbage collector finishes its model call from a finaliser,
        # which may run in a thread that holds the lock at that moment.
        self._lock = threading.RLock()
        self._next_index = 0
        # The latest answer's tool calls (the model's, or the user's own) that no execution has claimed yet.
        self._pending: list[tuple[ToolCall, Requester]] = []

    @property
    def policy(self) -> ContentPolicy:
        """The content policy the run's spans are written with."""
        return self._policy

    @property
    def trace_id(self) -> int:
        """The run's trace id (0 while a followed run has no span yet)."""
        return self._trace_id

    def _take_index(self) -> int:
        with self._lock:
            index = self._next_index
            self._next_index += 1
            return index

    def _expect_calls(self, calls: Sequence[ToolCall], requested_by: Requester) -> None:
        with self._lock:
            self._pending = [(c, requested_by) for c in calls]

    def _claim(self, name: str, call_id: str | None) -> tuple[str | None, Requester | None]:
        """The pending call this execution answers: by id if given, else the first of that tool's name."""
        with self._lock:
            for i, (call, requested_by) in enumerate(self._pending):
                if (call.id == call_id) if call_id else (call.name == name):
                    del self._pending[i]
                    return call.id or None, requested_by
        return call_id, None

    def _parent(self) -> Context | None:
        """The parent of a step span: the current span when it is in this run's trace, else the run's span.

        A thread that did not inherit the context (a plain ``ThreadPoolExecutor`` worker) has no current span;
        its steps would otherwise start traces of their own.
        """
        if self.span is None:  # a followed run's first step: it starts the trace (or joins the current span's)
            return Context() if self.own_trace else None
        if _current_run.get() is self:  # inside this run's block (or a copy of its context): the usual case, cheap
            return None
        if trace.get_current_span().get_span_context().trace_id == self._trace_id:
            return None
        return trace.set_span_in_context(self.span)

    def pending_call(self, name: str) -> bool:
        """Whether the latest answer asked for a call of tool ``name`` that no execution has claimed yet."""
        with self._lock:
            return any(call.name == name for call, _ in self._pending)

    def user_message(self, content: str | None, *, tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()) -> None:
        """Record a user turn (a short span of its own: the conventions have no operation for it).

        ``tool_calls`` (``ToolCall`` or OpenAI-style dicts) are tools the *user* runs on their side (dual
        control, as in τ² telecom); executions of them (``run.execute``, ``run.tool``, ``@tool``) that follow
        are recorded as requested by the user.
        """
        try:
            calls = parse_calls(tool_calls)
            step = UserMessage(index=self._take_index(), content=content, tool_calls=calls)
            if calls:
                self._expect_calls(calls, "user")
            attributes = guard.attributes("a user message", lambda p: attrs.user_attributes(step, p), self._policy)
            # Nothing runs inside a user turn's span, so it is never made current (which would cost more).
            self.tracer.start_span(
                attrs.span_name(step), context=self._parent(), kind=SpanKind.INTERNAL, attributes=attributes
            ).end()
        except Exception as exc:
            guard.log_failure("a user message", exc)

    @contextmanager
    def chat(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        input_messages: Sequence[Mapping[str, Any]] | None = None,
        tool_definitions: Sequence[ToolDefinition | Mapping[str, Any]] = (),
    ) -> Iterator[ChatRecorder]:
        """Record a model call around the block; an exception marks the span as failed and propagates.

        ``input_messages`` (GenAI or OpenAI-style messages) are written through the content policy;
        ``tool_definitions`` are ``ToolDefinition`` objects or OpenAI function dicts.
        """
        recorder = self.start_chat(
            model, provider=provider, input_messages=input_messages, tool_definitions=tool_definitions
        )
        with trace.use_span(recorder.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                yield recorder
            except BaseException as exc:
                recorder.end(exc)
                raise
        recorder.end()

    def start_chat(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        input_messages: Sequence[Mapping[str, Any]] | None = None,
        tool_definitions: Sequence[ToolDefinition | Mapping[str, Any]] = (),
        step_index: bool = True,
    ) -> ChatRecorder:
        """Start recording a model call whose end comes later (a streamed answer): the span is not made current;
        call the recorder's :meth:`~ChatRecorder.end` when the call is over. For auto-instrumentors.

        ``step_index=False`` leaves out ``agent_eval.step.index`` / ``.kind``: the span then reads as other
        instrumentations' do, its conversation rebuilt from its input messages (an auto-instrumentor sees
        the user's turns and the tool results only there)."""
        index = self._take_index()
        provider = provider or self._provider
        step = AssistantMessage(index=index, model=model, provider=provider)
        tools = guard.tool_definitions(tool_definitions) if tool_definitions else ()

        def build(policy: ContentPolicy) -> attrs.Attributes:
            return attrs.chat_request_attributes(
                step,
                policy,
                input_messages=input_messages,
                tool_definitions=tools,
                conversation_id=self.conversation_id,
            )

        attributes = guard.attributes("a model call", build, self._policy)
        if self.span is None and self.implicit_root:
            attributes[sc.AGENT_EVAL_RUN_FOLLOWED] = True
        if not step_index:
            attributes.pop(sc.AGENT_EVAL_STEP_INDEX, None)
            attributes.pop(sc.AGENT_EVAL_STEP_KIND, None)
        span = self.tracer.start_span(
            attrs.span_name(step),
            context=self._parent(),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        if self.span is None:
            self.span, self._trace_id = span, span.get_span_context().trace_id
        self.last_model_span = span
        return ChatRecorder(
            span, index, self._policy, model, provider, lambda calls: self._expect_calls(calls, "assistant")
        )

    @contextmanager
    def tool(
        self,
        name: str,
        *,
        call_id: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        requested_by: Requester | None = None,
    ) -> Iterator[ToolRecorder]:
        """Record a tool execution around the block; an exception is recorded as the tool's error and propagates.

        Without ``call_id``, the execution takes the id of the latest answer's first unanswered call of this
        tool. ``requested_by`` defaults to whoever made that call (the model, or the user on their side).
        """
        call_id, requester = self._claim(name, call_id)
        step = ToolExecution(
            index=self._take_index(),
            name=name,
            call_id=call_id,
            arguments=arguments,
            requested_by=requested_by or requester or "assistant",
        )
        attributes = guard.attributes(
            "a tool call",
            lambda p: attrs.tool_attributes(step, p, conversation_id=self.conversation_id),
            self._policy,
        )
        with self.tracer.start_as_current_span(
            attrs.span_name(step),
            context=self._parent(),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            token = _tool_owner.set(self)
            try:
                yield ToolRecorder(span, self._policy)
            except BaseException as exc:
                guard.record_failure(span, exc, self._policy, tool=True)
                raise
            finally:
                _restore(_tool_owner, token)

    def execute(self, call: ToolCall, fn: Callable[..., R], *, requested_by: Requester | None = None) -> R:
        """Run ``fn(**call.arguments)`` as the execution of ``call``, recorded with its call id.

        A call whose arguments were not valid JSON is not run: the span records the error and a ``ValueError``
        is raised.
        """
        with self.tool(call.name, call_id=call.id or None, arguments=call.arguments, requested_by=requested_by) as t:
            result = fn(**_call_arguments(call))
            t.set_result(result)
            return result

    async def aexecute(
        self, call: ToolCall, fn: Callable[..., Awaitable[R]], *, requested_by: Requester | None = None
    ) -> R:
        """:meth:`execute` for an ``async`` tool function: the span covers the awaited call."""
        with self.tool(call.name, call_id=call.id or None, arguments=call.arguments, requested_by=requested_by) as t:
            result = await fn(**_call_arguments(call))
            t.set_result(result)
            return result

    def set_outcome(self, success: bool, reward: float | None = None) -> None:
        """What the application knows of how the run ended (for example a resolved ticket, a user rating)."""
        try:
            if self.span is not None:
                self.span.set_attributes(attrs.outcome_attributes(ApplicationOutcome(success=success, reward=reward)))
        except Exception as exc:
            guard.log_failure("a run outcome", exc)


@contextmanager
def agent_run(
    agent_name: str | None = None,
    *,
    conversation_id: str | None = None,
    system_instructions: str | None = None,
    tool_definitions: Sequence[ToolDefinition | Mapping[str, Any]] = (),
    provider: str | None = None,
    tracer_provider: TracerProvider | None = None,
    content: ContentPolicy | None = None,
) -> Iterator[AgentRunRecorder]:
    """Record one agent run as an ``invoke_agent`` span; the steps recorded inside are its children.

    ``tool_definitions`` are :class:`~otel_agent_eval.model.ToolDefinition` objects or OpenAI function dicts
    (an invalid one is logged and left out). ``content`` overrides the process-wide :class:`ContentPolicy`
    for this run.
    """
    policy = content or default_policy()
    tracer = get_tracer(tracer_provider)
    tools = guard.tool_definitions(tool_definitions) if tool_definitions else ()

    def build(p: ContentPolicy) -> attrs.Attributes:
        return attrs.run_attributes(
            agent_name=agent_name,
            conversation_id=conversation_id,
            system_instructions=system_instructions,
            tool_definitions=tools,
            policy=p,
            provider=provider,
        )

    with tracer.start_as_current_span(
        attrs.run_span_name(agent_name),
        kind=SpanKind.INTERNAL,
        attributes=guard.attributes("an agent run", build, policy),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        recorder = AgentRunRecorder(tracer, span, policy, provider, conversation_id)
        token = _current_run.set(recorder)
        try:
            yield recorder
        except BaseException as exc:
            guard.record_failure(span, exc, policy)
            raise
        finally:
            _restore(_current_run, token)
