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

A tool function decorated with :func:`tool` records an ``execute_tool`` span whenever it runs inside an
:func:`agent_run`, and is a plain call outside one. Errors in the instrumentation itself are logged, never
raised into the agent.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from .. import __version__
from .. import semconv as sc
from ..ingest.messages import parse_tool_call
from ..model import ApplicationOutcome, AssistantMessage, ToolCall, ToolDefinition, ToolExecution, UserMessage
from . import attributes as attrs
from .content import ContentPolicy, default_policy

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_current_run: ContextVar[AgentRunRecorder | None] = ContextVar("otel_agent_eval_current_run", default=None)


def get_tracer(tracer_provider: TracerProvider | None = None) -> Tracer:
    return trace.get_tracer("otel_agent_eval", __version__, tracer_provider=tracer_provider)


def current_run() -> AgentRunRecorder | None:
    """The run being recorded in this context, if any."""
    return _current_run.get()


def _stringify(value: Any) -> str:
    return value if isinstance(value, str) else attrs.dumps(value)


class ChatRecorder:
    """One model call. Call :meth:`set_response` with what the model answered."""

    def __init__(self, span: Span, index: int, policy: ContentPolicy, model: str | None, provider: str | None):
        self.span = span
        self.index = index
        self._policy = policy
        self._model = model
        self._provider = provider
        self.tool_calls: tuple[ToolCall, ...] = ()
        self.content: str | None = None

    def set_response(
        self,
        content: str | None = None,
        tool_calls: Sequence[ToolCall | Mapping[str, Any]] = (),
        *,
        finish_reason: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
    ) -> None:
        """Record the model's answer: text and/or tool calls (``ToolCall``, or OpenAI-style dicts)."""
        try:
            calls = tuple(
                c if isinstance(c, ToolCall) else parse_tool_call(c, field=f"tool_calls[{i}]", strict=False)
                for i, c in enumerate(tool_calls)
            )
            self.tool_calls, self.content = calls, content
            step = AssistantMessage(
                index=self.index,
                content=content,
                tool_calls=calls,
                model=model or self._model,
                provider=self._provider,
                finish_reason=finish_reason,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
            )
            self.span.set_attributes(attrs.response_attributes(step, self._policy))
            if model and model != self._model:
                self.span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, model)
        except Exception:  # never break the agent because of its telemetry
            logger.exception("otel-agent-eval: could not record a model response")


class ToolRecorder:
    """One tool execution. Set its result with :meth:`set_result`, or a returned error with :meth:`set_error`."""

    def __init__(self, span: Span, policy: ContentPolicy):
        self.span = span
        self._policy = policy

    def set_result(self, result: Any) -> None:
        try:
            self.span.set_attributes(attrs.tool_result_attributes(_stringify(result), None, self._policy))
        except Exception:
            logger.exception("otel-agent-eval: could not record a tool result")

    def set_error(self, message: str, result: Any = None) -> None:
        """The tool answered with an error (without raising)."""
        try:
            text = None if result is None else _stringify(result)
            self.span.set_attributes(attrs.tool_result_attributes(text, message, self._policy))
            self.span.set_status(Status(StatusCode.ERROR, self._policy.text(message)))
        except Exception:
            logger.exception("otel-agent-eval: could not record a tool error")


class AgentRunRecorder:
    """The run being recorded: its root span, and the methods that record its steps."""

    def __init__(self, tracer: Tracer, span: Span, policy: ContentPolicy, provider: str | None):
        self.tracer = tracer
        self.span = span
        self._policy = policy
        self._provider = provider
        self._next_index = 0

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def user_message(self, content: str) -> None:
        """Record a user turn (a short span of its own: the conventions have no operation for it)."""
        try:
            step = UserMessage(index=self._take_index(), content=content)
            # Nothing runs inside a user turn's span, so it is never made current (which would cost more).
            self.tracer.start_span(
                attrs.span_name(step), kind=SpanKind.INTERNAL, attributes=attrs.user_attributes(step, self._policy)
            ).end()
        except Exception:
            logger.exception("otel-agent-eval: could not record a user message")

    @contextmanager
    def chat(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        input_messages: Sequence[Mapping[str, Any]] | None = None,
        tool_definitions: Sequence[ToolDefinition] = (),
    ) -> Iterator[ChatRecorder]:
        """Record a model call around the block; an exception marks the span as failed and propagates."""
        index = self._take_index()
        step = AssistantMessage(index=index, model=model, provider=provider or self._provider)
        start_attrs = attrs.chat_request_attributes(
            step, self._policy, input_messages=input_messages, tool_definitions=tool_definitions
        )
        with self.tracer.start_as_current_span(
            attrs.span_name(step), kind=SpanKind.CLIENT, attributes=start_attrs, record_exception=True
        ) as span:
            yield ChatRecorder(span, index, self._policy, model, provider or self._provider)

    @contextmanager
    def tool(
        self, name: str, *, call_id: str | None = None, arguments: Mapping[str, Any] | None = None
    ) -> Iterator[ToolRecorder]:
        """Record a tool execution around the block; an exception is recorded as the tool's error and propagates."""
        step = ToolExecution(index=self._take_index(), name=name, call_id=call_id, arguments=arguments)
        with self.tracer.start_as_current_span(
            attrs.span_name(step),
            kind=SpanKind.INTERNAL,
            attributes=attrs.tool_attributes(step, self._policy),
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            recorder = ToolRecorder(span, self._policy)
            try:
                yield recorder
            except Exception as exc:
                span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
                span.set_attribute(sc.AGENT_EVAL_TOOL_ERROR, self._policy.text(str(exc)) or "")
                raise

    def execute(self, call: ToolCall, fn: Callable[..., R]) -> R:
        """Run ``fn(**call.arguments)`` as the execution of ``call``, recorded with its call id."""
        with self.tool(call.name, call_id=call.id, arguments=call.arguments) as recorder:
            token = _in_tool.set(True)  # a @tool-decorated fn must not record a second span
            try:
                result = fn(**dict(call.arguments or {}))
            finally:
                _in_tool.reset(token)
            recorder.set_result(result)
            return result

    def set_outcome(self, success: bool, reward: float | None = None) -> None:
        """What the application knows of how the run ended (for example a resolved ticket, a user rating)."""
        self.span.set_attributes(attrs.outcome_attributes(ApplicationOutcome(success=success, reward=reward)))


_in_tool: ContextVar[bool] = ContextVar("otel_agent_eval_in_tool", default=False)


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

    ``tool_definitions`` are :class:`~otel_agent_eval.model.ToolDefinition` objects or OpenAI function dicts.
    ``content`` overrides the process-wide :class:`ContentPolicy` for this run.
    """
    policy = content or default_policy()
    tools = tuple(t if isinstance(t, ToolDefinition) else ToolDefinition.from_openai(t) for t in tool_definitions)
    tracer = get_tracer(tracer_provider)
    with tracer.start_as_current_span(
        attrs.run_span_name(agent_name),
        kind=SpanKind.INTERNAL,
        attributes=attrs.run_attributes(
            agent_name=agent_name,
            conversation_id=conversation_id,
            system_instructions=system_instructions,
            tool_definitions=tools,
            policy=policy,
            provider=provider,
        ),
    ) as span:
        recorder = AgentRunRecorder(tracer, span, policy, provider)
        token = _current_run.set(recorder)
        try:
            yield recorder
        finally:
            _current_run.reset(token)


@overload
def tool(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def tool(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def tool(fn: Callable[P, R] | None = None, /, *, name: str | None = None) -> Any:
    """Decorate a plain tool function so that each call inside an :func:`agent_run` is an ``execute_tool`` span.

    The arguments are recorded by parameter name; the return value is the result; an exception is the
    tool's error (and propagates unchanged).
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        tool_name = name or func.__name__
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            run = _current_run.get()
            if run is None or _in_tool.get():
                return func(*args, **kwargs)
            try:
                bound = signature.bind_partial(*args, **kwargs)
                arguments: dict[str, Any] | None = dict(bound.arguments)
            except TypeError:
                arguments = None  # the call itself will raise the TypeError, recorded as the tool's error
            with run.tool(tool_name, arguments=arguments) as recorder:
                token = _in_tool.set(True)
                try:
                    result = func(*args, **kwargs)
                finally:
                    _in_tool.reset(token)
                recorder.set_result(result)
                return result

        return wrapper

    return decorate(fn) if fn is not None else decorate
