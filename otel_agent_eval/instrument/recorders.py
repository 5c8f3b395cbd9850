"""The recorders handed out inside a step's block: what a model answered, what a tool returned."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from .. import semconv as sc
from ..ingest.messages import parse_tool_call
from ..model import AssistantMessage, ToolCall
from . import attributes as attrs
from . import guard
from .content import ContentPolicy
from .messages import dumps


def stringify(value: Any) -> str:
    """A tool's result as text: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else dumps(value)


def parse_calls(tool_calls: Sequence[ToolCall | Mapping[str, Any]]) -> tuple[ToolCall, ...]:
    """Tool calls as ``ToolCall`` (OpenAI-style dicts are read); one that cannot be read is logged and left out."""
    calls = []
    for i, c in enumerate(tool_calls):
        try:
            calls.append(c if isinstance(c, ToolCall) else parse_tool_call(c, field=f"tool_calls[{i}]", strict=False))
        except Exception as exc:
            guard.log_failure(f"tool call {i}", exc)
    return tuple(calls)


class ChatRecorder:
    """One model call. Call :meth:`set_response` with what the model answered."""

    def __init__(
        self,
        span: Span,
        index: int,
        policy: ContentPolicy,
        model: str | None,
        provider: str | None,
        on_calls: Callable[[tuple[ToolCall, ...]], None],
    ):
        self.span = span
        self.index = index
        self._policy = policy
        self._on_calls = on_calls  # tells the run which calls its next tool executions answer
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
        """Record the model's answer: text and/or tool calls (``ToolCall``, or OpenAI-style dicts).

        ``finish_reason`` is the provider's own value (``tool_calls``, ``stop``, ``end_turn``, ...).
        """
        try:
            calls = parse_calls(tool_calls)
            self.tool_calls, self.content = calls, content
            self._on_calls(calls)
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
            self.span.set_attributes(
                guard.attributes("a model response", lambda p: attrs.response_attributes(step, p), self._policy)
            )
            if model and model != self._model:
                self.span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, model)
        except Exception as exc:  # never break the agent because of its telemetry
            guard.log_failure("a model response", exc)

    def end(self, exc: BaseException | None = None) -> None:
        """End the span of a call started with ``start_chat``; ``exc``: the call failed with it."""
        try:
            if exc is not None:
                guard.record_failure(self.span, exc, self._policy)
            self.span.end()
        except Exception as failure:
            guard.log_failure("the end of a model call", failure)


class ToolRecorder:
    """One tool execution. Set its result with :meth:`set_result`, or a returned error with :meth:`set_error`."""

    def __init__(self, span: Span, policy: ContentPolicy):
        self.span = span
        self._policy = policy

    def set_result(self, result: Any) -> None:
        try:
            self.span.set_attributes(
                guard.attributes(
                    "a tool result", lambda p: attrs.tool_result_attributes(stringify(result), None, p), self._policy
                )
            )
        except Exception as exc:
            guard.log_failure("a tool result", exc)

    def set_error(self, message: str, result: Any = None) -> None:
        """The tool answered with an error (without raising)."""
        try:
            text = None if result is None else stringify(result)
            self.span.set_attributes(
                guard.attributes("a tool error", lambda p: attrs.tool_result_attributes(text, message, p), self._policy)
            )
            try:
                description = self._policy.text(message)
            except Exception as exc:
                guard.log_failure("a tool error message", exc)
                description = None
            self.span.set_status(Status(StatusCode.ERROR, description))
        except Exception as exc:
            guard.log_failure("a tool error", exc)
