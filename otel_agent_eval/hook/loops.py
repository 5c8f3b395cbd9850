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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .guard import Guard, Verdict


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
