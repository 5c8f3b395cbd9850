"""Asking the user again for what they already gave."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...model import AgentRun, AssistantMessage, UserMessage
from ..engine import RunContext
from ..findings import Finding
from ..text import sentences

# What the agent asks for, and how the user's answer looks once given.
_KINDS = {
    "e-mail address": (re.compile(r"\be-?mail\b", re.I), re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")),
    "zip code": (re.compile(r"\b(zip|postal) ?code\b", re.I), re.compile(r"\b\d{5}(?:-\d{4})?\b")),
    "phone number": (re.compile(r"\bphone\b", re.I), re.compile(r"\+?\d[\d ()-]{8,}\d")),
}
_DIGIT_OR_AT = re.compile(r"[\d@]")
_ASK = re.compile(r"\?|\b(please (provide|share|confirm|give)|could you|can you|may i have)\b", re.I)
# Asking for another value, or to check one that did not work, is not asking again.
_ANOTHER = re.compile(
    r"\b(new|different|another|other|alternate|alternative|double.?check|again|correct|updated)\b", re.I
)


class ClarificationDetector:
    """The agent asks for an e-mail, zip code or phone number the user already wrote in the conversation."""

    name = "clarification"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        focused = context.focus_step
        if context.focus is not None and not (
            isinstance(focused, AssistantMessage) and focused.content and _ASK.search(focused.content)
        ):
            return
        given: dict[str, int] = {}
        for step in run.steps:
            if isinstance(step, UserMessage):
                text = step.content or ""
                if not _DIGIT_OR_AT.search(text):  # every answer looked for has a digit or an @
                    continue
                for kind, (_, answer) in _KINDS.items():
                    if kind not in given and answer.search(text):
                        given[kind] = step.index
            elif (
                given
                and context.concerns(step.index)
                and isinstance(step, AssistantMessage)
                and step.content
                and _ASK.search(step.content)
                and any(_KINDS[kind][0].search(step.content) for kind in given)
            ):
                for sentence in sentences(step.content):
                    if not _ASK.search(sentence) or _ANOTHER.search(sentence):
                        continue
                    for kind, (asks, answer) in _KINDS.items():
                        if kind in given and asks.search(sentence) and not answer.search(sentence):
                            yield context.finding(
                                self.name,
                                "clarification_failure",
                                step.index,
                                f"The user already gave their {kind} at step {given[kind]}: use it instead of "
                                "asking again.",
                                f"asked {sentence.strip()[:120]!r} after the user gave a {kind} at step {given[kind]}",
                                confidence=0.35,
                                recovered=True,
                            )
                            given.pop(kind)
