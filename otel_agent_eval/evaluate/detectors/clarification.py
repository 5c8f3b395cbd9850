"""Asking the user again for what they already gave."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...model import AgentRun, AssistantMessage
from ..actions import name_words
from ..engine import RunContext
from ..findings import Finding
from ..text import lowered, sentences

_ASK = re.compile(r"\?|\b(please (provide|share|confirm|give)|could you|can you|may i have)\b", re.I)
# Asking for another value, or to check one that did not work, is not asking again.
_ANOTHER = re.compile(
    r"\b(new|different|another|other|alternate|alternative|double.?check|again|correct|updated)\b", re.I
)
_WORD = re.compile(r"[a-z0-9]+")


class ClarificationDetector:
    """The agent asks for a detail the user already gave, and a tool call already used.

    What counts as "a detail" comes from the tools: a call's argument whose value the user wrote is a detail
    the user gave, named by the argument's name (``email``, ``zip``, ``member_number``). A later question
    naming every word of that argument's name, and not asking for another value, asks for it again.
    """

    name = "clarification"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        focused = context.focus_steps
        if focused is not None and not any(
            isinstance(s, AssistantMessage) and s.content and _ASK.search(s.content) for s in focused
        ):
            return
        facts = context.facts
        # argument name -> (the user's step that gave the value, the call's step that used it, the value)
        given: dict[str, tuple[int, int, str]] = {}
        for call in facts.calls:
            for key, value in (call.call.arguments or {}).items():
                if key in given or not isinstance(value, str) or len(value) < 3:
                    continue
                user = next(
                    (
                        u
                        for u in facts.user_messages
                        if u.index < call.step and value.lower() in lowered(u.content or "")
                    ),
                    None,
                )
                if user is not None:
                    given[key] = (user.index, call.step, value.lower())
        if not given:
            return
        # The words naming each detail, read once per argument name rather than for every sentence.
        names = {key: [w for w in name_words(key) if len(w) >= 2] for key in given}

        def may_ask_again(index: int, content: str) -> bool:
            """Whether some detail left, used by a call before step ``index``, has every word of its name
            among the message's words. Each sentence's words are among the message's, so otherwise no
            sentence of it can ask for one again, and its regex searches are skipped."""
            due = [names[key] for key, (_, call_step, _) in given.items() if names[key] and call_step < index]
            if not due:
                return False
            words = set(_WORD.findall(content.lower()))
            return any(words.issuperset(needed) for needed in due)

        last = max(context.focus) if context.focus is not None else None
        for step in run.steps:
            if last is not None and step.index > last:
                break  # nothing later changes what is reported at the focused steps
            # Steps outside the focus are read too: a detail asked for again there is reported there, once,
            # and not again at a focused step (as a look at the whole run reports it).
            if (
                not isinstance(step, AssistantMessage)
                or not step.content
                or not may_ask_again(step.index, step.content)
                or not _ASK.search(step.content)
            ):
                continue
            for sentence in sentences(step.content):
                if not _ASK.search(sentence) or _ANOTHER.search(sentence):
                    continue
                words = set(_WORD.findall(lowered(sentence)))
                for key, (user_step, call_step, value) in list(given.items()):
                    needed = names[key]
                    if call_step >= step.index or not needed or not words.issuperset(needed):
                        continue
                    if value in lowered(sentence):
                        continue  # reading the value back to check it is not asking for it
                    given.pop(key)
                    if not context.concerns(step.index):
                        continue
                    yield context.finding(
                        self.name,
                        "clarification_failure",
                        step.index,
                        f"The user already gave their {' '.join(needed)} at step {user_step}: use it instead of "
                        "asking again.",
                        f"asked {sentence.strip()[:120]!r} after the user gave {key} at step {user_step}, used "
                        f"by the call at step {call_step}",
                        confidence=0.35,
                        recovered=True,
                        textual=True,
                    )
