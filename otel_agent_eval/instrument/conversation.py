"""Model calls seen by the auto-instrumentors, put together into runs: one agent loop, one trace.

An agent written on a bare SDK calls the model again and again, each time with the conversation so far. With
no span around the loop, every call would be a trace of its own, and the evaluator would see the loop in
pieces. So the auto-instrumentors follow the conversation:

* inside an :func:`~otel_agent_eval.instrument.agent_run` a model call is a step of that run, as with the
  manual API;
* otherwise, a model call whose messages **continue** a conversation followed in the same context (thread
  or asyncio task) -- its messages first, then its latest answer, then what came since -- is a step of that
  run, in the same trace: the run's first call's span is the root (marked ``agent_eval.run.followed``). A
  ``@tool`` function the model asked for, run in between, is recorded in that run too. A call that continues
  none starts a new run without ending the others (up to 8 are followed per context: a router or moderation
  call on the side leaves the loop whole); one made inside a step of a followed run (a tool asking the model
  for a summary) is a run of its own in a trace of its own. Conversations are compared by role and text,
  tool call ids and the ids tool results answer, so a message rebuilt by the agent (a dict instead of the
  SDK's object) still matches.
* with a span already current (a web request's, say), a new run's first call is its child, as usual.

Nothing here ever raises into the application: the instrumentors call it inside their own guards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from ..ingest.messages import ChatMessage
from ..model import ToolCall, ToolDefinition
from . import guard
from .api import AgentRunRecorder, _current_run
from .content import ContentPolicy, default_policy
from .messages import tool_call_part
from .recorders import ChatRecorder

Key = tuple[Hashable, ...]


@dataclass(frozen=True)
class _Followed:
    run: AgentRunRecorder
    keys: Key
    response_id: str | None = None


# The conversations followed in this context, the latest first. Several: a model call that continues none of
# them (a summary made inside a tool, a router, a moderation call) starts its own run without ending the
# loop's. Immutable, and replaced rather than changed: tasks that copy the context (asyncio.gather) each
# follow on from what they inherited without disturbing one another.
_followed: ContextVar[tuple[_Followed, ...]] = ContextVar("otel_agent_eval_followed_runs", default=())
_MOST_FOLLOWED = 8


# Set while a framework's instrumentor (LangChain) records a model call itself: the SDK call it makes inside
# is the same step, and the SDK instrumentors leave it alone rather than record it twice. A marker object, not
# a flag: a framework may end the call in a copy of the context it started in (LangChain does, for async
# calls), where resetting the variable is impossible; ending the marker works from anywhere.
class FrameworkCall:
    """A model call a framework instrumentor records; :meth:`end` it when the call is over."""

    def __init__(self) -> None:
        self.active = True
        self._token: Token[FrameworkCall | None] = _framework_call.set(self)

    def end(self) -> None:
        self.active = False
        # In another context than the start the reset fails; the marker being inactive there is enough.
        with contextlib.suppress(ValueError):
            _framework_call.reset(self._token)


_framework_call: ContextVar[FrameworkCall | None] = ContextVar("otel_agent_eval_framework_model_call", default=None)


def recorded_by_framework() -> bool:
    """Whether a framework instrumentor already records the model call being made in this context."""
    marker = _framework_call.get()
    return marker is not None and marker.active


def followed_run(tool: str) -> AgentRunRecorder | None:
    """The latest run followed in this context whose model asked for tool ``tool`` and has not had it run yet,
    in the current trace (for a tool that runs outside any agent span: ``@tool``, a LangChain tool)."""
    current = trace.get_current_span().get_span_context()
    for followed in _followed.get():
        if current.is_valid and current.trace_id != followed.run.trace_id:
            continue
        if followed.run.pending_call(tool):
            return followed.run
    return None


def latest_model_call() -> tuple[Tracer, Span] | None:
    """The tracer and span of the latest model call of the latest run followed in this context (the hook
    records its verdict on an answer there, once that call's span has ended)."""
    for followed in _followed.get():
        if followed.run.last_model_span is not None:
            return followed.run.tracer, followed.run.last_model_span
    return None


def _remember(followed: _Followed, replacing: AgentRunRecorder | None = None) -> None:
    """Put ``followed`` first among this context's conversations (in place of the entry of run ``replacing``)."""
    others = tuple(f for f in _followed.get() if f.run is not (replacing or followed.run))
    _followed.set((followed, *others)[:_MOST_FOLLOWED])


def message_key(message: ChatMessage) -> Hashable:
    """What identifies a message when the agent sends it again (it may rebuild it in another shape)."""
    if message.role == "assistant" and message.tool_calls:
        return ("assistant", tuple(c.id or c.name for c in message.tool_calls))
    if message.role == "tool":
        return ("tool", message.tool_call_id or message.content or "")
    return (message.role, (message.content or "").strip())


# Content as it is: the span's attribute builder applies the real content policy to the whole message.
_UNREDACTED = ContentPolicy(capture=True)


def genai_message(message: ChatMessage) -> dict[str, Any]:
    """A message as the GenAI conventions write it (``role`` + ``parts``), content unredacted (the span's
    attribute builder applies the content policy)."""
    if message.role == "tool":
        part: dict[str, Any] = {"type": "tool_call_response"}
        if message.tool_call_id:
            part["id"] = message.tool_call_id
        part["response"] = message.content if message.content is not None else ""
        return {"role": "tool", "parts": [part]}
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "content": message.content})
    for call in message.tool_calls:
        parts.append(tool_call_part(call, _UNREDACTED))
    return {"role": message.role, "parts": parts}


@dataclass(frozen=True)
class Prompt:
    """A model call's input, ready for its span: GenAI messages, and each message's :func:`message_key`.

    Instrumentors that read their SDK's messages straight into this shape (skipping :class:`ChatMessage`)
    must give the same keys :func:`message_key` gives for the same message, or conversations break apart.
    """

    messages: list[dict[str, Any]]
    keys: Key

    @classmethod
    def of(cls, messages: Sequence[ChatMessage]) -> Prompt:
        return cls([genai_message(m) for m in messages], tuple(message_key(m) for m in messages))


class ModelCall:
    """A model call being recorded by an auto-instrumentor; :meth:`finish` or :meth:`fail` ends it."""

    def __init__(self, recorder: ChatRecorder, followed: _Followed | None, keys: Key) -> None:
        self.recorder = recorder
        self.span = recorder.span
        self._followed = followed
        self._keys = keys
        self._ended = False

    def finish(
        self,
        *,
        content: str | None = None,
        tool_calls: Sequence[ToolCall | Mapping[str, Any]] = (),
        finish_reason: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
        response_id: str | None = None,
    ) -> None:
        """Record the answer and end the span (once; later calls do nothing)."""
        if self._ended:
            return
        self._ended = True
        self.recorder.set_response(
            content,
            tool_calls,
            finish_reason=finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            model=model,
        )
        try:
            if response_id:
                self.span.set_attribute("gen_ai.response.id", response_id)
            if self._followed is not None:
                answer = ChatMessage(role="assistant", content=content, tool_calls=self.recorder.tool_calls)
                keys = (*self._keys, message_key(answer))
                _remember(_Followed(self._followed.run, keys, response_id or None))
        except Exception as exc:
            guard.log_failure("a model answer", exc)
        self.recorder.end()

    def fail(self, exc: BaseException) -> None:
        """The call raised ``exc`` (recorded through the content policy; the span ends)."""
        if self._ended:
            return
        self._ended = True
        self.recorder.end(exc)

    def end(self) -> None:
        """End the span with whatever was recorded (a stream closed early)."""
        if not self._ended:
            self._ended = True
            self.recorder.end()


def start_model_call(
    tracer: Tracer,
    *,
    provider: str,
    model: str | None,
    messages: Sequence[ChatMessage] | Prompt,
    tool_definitions: Sequence[ToolDefinition] = (),
    policy: ContentPolicy | None = None,
    previous_response_id: str | None = None,
) -> ModelCall:
    """Start recording a model call with these input ``messages`` (system messages included), as a step of
    the explicit run, of the conversation it continues, or of a new run."""
    policy = policy or default_policy()
    prompt = messages if isinstance(messages, Prompt) else Prompt.of(messages)
    keys: Key = prompt.keys
    followed: _Followed | None = None
    run = _current_run.get()
    if run is None:
        continued = _continued(keys, previous_response_id, tracer)
        if continued is None:
            run = AgentRunRecorder(tracer, None, policy, provider)
            # Inside a step of a followed run (a model call made by a tool): a run of its own, in its own trace,
            # not steps mixed into the loop's.
            current = trace.get_current_span().get_span_context()
            run.own_trace = current.is_valid and any(f.run.trace_id == current.trace_id for f in _followed.get())
        else:
            run = continued.run
            if previous_response_id and previous_response_id == continued.response_id:
                keys = (*continued.keys, *keys)  # the server keeps the history: these are only the new messages
        # Remembered now: a call that fails and is retried with the same messages stays in the run.
        followed = _Followed(run, keys)
        _remember(followed)
    recorder = run.start_chat(
        model,
        provider=provider,
        input_messages=prompt.messages,
        tool_definitions=tool_definitions,
        step_index=False,
    )
    return ModelCall(recorder, followed, keys)


def _continued(keys: Key, previous_response_id: str | None, tracer: Tracer) -> _Followed | None:
    """The followed conversation these messages continue (the one that shares most of them), if any."""
    current = trace.get_current_span().get_span_context()
    best: _Followed | None = None
    for followed in _followed.get():
        if followed.run.tracer is not tracer:  # instrumented again since, to another provider
            continue
        if current.is_valid and current.trace_id != followed.run.trace_id:
            continue  # inside another trace (a new request, a tool's own model call)
        if previous_response_id:
            if previous_response_id == followed.response_id:
                return followed
            continue
        known = followed.keys
        if len(keys) >= len(known) and keys[: len(known)] == known and (best is None or len(known) > len(best.keys)):
            best = followed
    return best
