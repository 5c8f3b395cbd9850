"""Helpers for the common agent-loop shapes.

An OpenAI-style messages loop: before executing the tool calls of an assistant message, ask the guard; a
blocked call is not executed: each call is answered to the model with the critique, and the model tries again.
A retry policy bounds the revisions: after ``max_revisions`` the step is let through (``then="allow"``, the
default: the guard never locks an agent up) or the loop is stopped (``then="stop"``).

>>> from otel_agent_eval.hook import Guard
>>> from otel_agent_eval.hook.loops import OpenAILoopGuard
>>> tools = [{"type": "function", "function": {"name": "refund", "parameters": {"type": "object",
...     "properties": {"amount": {"type": "number"}}, "required": ["amount"]}}}]
>>> loop = OpenAILoopGuard(Guard(tools=tools))
>>> reply = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
...          "function": {"name": "refund", "arguments": "{}"}}]}
>>> answers = loop.review([{"role": "user", "content": "Refund me."}], reply)
>>> answers[0]["role"], answers[0]["tool_call_id"], answers[0]["content"].startswith("Not executed")
('tool', 'c1', True)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .guard import Guard, Verdict

R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    max_revisions: int = 2
    then: Literal["allow", "stop"] = "allow"


class GuardStopped(Exception):
    """The step was still wrong after the allowed revisions, and the policy says stop."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.critique)
        self.verdict = verdict


class OpenAILoopGuard:
    """Reviews assistant messages of an OpenAI-style loop before their tool calls run."""

    def __init__(self, guard: Guard, retry: RetryPolicy | None = None) -> None:
        self.guard = guard
        self.retry = retry or RetryPolicy()
        self.revisions = 0
        self.last: Verdict | None = None

    def review(
        self, messages: Sequence[Mapping[str, Any]], assistant_message: Mapping[str, Any]
    ) -> list[dict[str, Any]] | None:
        """``None``: go ahead and execute the calls. Otherwise the tool messages that answer every call with
        the critique: append the assistant message and these, and ask the model again."""
        calls = list(assistant_message.get("tool_calls") or ())
        if not calls:
            return None
        verdict = self.last = self.guard.check(messages, assistant_message)
        if verdict.allowed:
            self.revisions = 0
            return None
        if self.revisions >= self.retry.max_revisions:
            self.revisions = 0
            if self.retry.then == "stop":
                raise GuardStopped(verdict)
            return None
        self.revisions += 1
        return [
            {"role": "tool", "tool_call_id": call.get("id"), "content": f"Not executed: {verdict.critique}"}
            for call in calls
        ]


class GuardRejected(Exception):
    """A tool call the guard sent back; ``str(exc)`` is the critique, for the model."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.critique)
        self.verdict = verdict


def guarded(
    guard: Guard, history: Callable[[], Sequence[Mapping[str, Any]]], *, name: str | None = None
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate a plain tool function so that each call is checked first; a call the guard sends back raises
    :class:`GuardRejected` (its message is the critique) instead of running.

    ``history`` returns the conversation so far (OpenAI-style messages), whatever the agent keeps it in.

    >>> from otel_agent_eval.hook import Guard
    >>> tools = [{"type": "function", "function": {"name": "refund", "parameters": {"type": "object",
    ...     "properties": {"amount": {"type": "number"}}, "required": ["amount"]}}}]
    >>> conversation = [{"role": "user", "content": "Refund me 20."}]
    >>> @guarded(Guard(tools=tools), lambda: conversation)
    ... def refund(amount=None):
    ...     return "refunded"
    >>> refund(amount=20)
    'refunded'
    >>> try:
    ...     refund()
    ... except GuardRejected as exc:
    ...     print(exc.verdict.action)
    revise
    """

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        tool_name = name or fn.__name__

        @functools.wraps(fn)
        def wrapper(**arguments: Any) -> R:
            proposed = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"guarded-{tool_name}",
                        "type": "function",
                        "function": {"name": tool_name, "arguments": json.dumps(arguments, default=str)},
                    }
                ],
            }
            verdict = guard.check(history(), proposed)
            if not verdict.allowed:
                raise GuardRejected(verdict)
            return fn(**arguments)

        return wrapper

    return decorate
