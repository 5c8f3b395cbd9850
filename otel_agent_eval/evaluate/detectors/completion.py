"""Runs that end with work undone: a promised action never taken, a confirmed action never carried out,
a requested kind of change never made and never refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...model import AgentRun, AssistantMessage
from ..engine import RunContext
from ..findings import Finding
from ..text import plain_statements

# "I will / let me / I'm going to <verb>": the verb is any word; which tool carries it is read from the
# run's own tools (evaluate/actions.py), so "let me check" promises nothing a write must keep.
# Matched against lower-cased text. As written, ``\b(?:i will|i'll|let me|i am going to|i'm going to)\s+...``
# makes the regex engine try every position; opening with the first letter ("i" or "l") lets it skip to
# those in C. The look-behinds then stand for the ``\b`` before that letter and pick the phrases it opens.
_PROMISE = re.compile(
    r"[il](?<!\w[il])(?:(?<=i)(?: will|'ll| am going to|'m going to)|(?<=l)et me)\s+(?:now\s+)?(?:go ahead and\s+)?"
    r"(?:proceed (?:to|with)\s+)?([a-z]{3,})\b",
)
_WORDS = re.compile(r"[a-z]{4,}")
_ASKS_TO_PROCEED = re.compile(r"\b(confirm|proceed|shall i|would you like me to|do you want me to)\b", re.I)
_DECLINES = re.compile(r"\b(no|don'?t|not)\b", re.I)


class CompletionDetector:
    """At the end of a run: actions promised, confirmed or requested that no successful write carried out."""

    name = "completion"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        if not context.complete or not run.steps:
            return
        facts = context.facts
        policy = context.policy
        succeeded = [c for c in facts.writes if c.succeeded]
        agent_texts = [s for s in run.steps if isinstance(s, AssistantMessage) and s.content]
        refusals = facts.refusals
        refused = bool(refusals)
        transferred = any(policy.is_transfer(c.name) for c in facts.calls)

        # 1. The agent said it would act, and no write followed.
        for step in agent_texts:
            promise, tools = next(
                (
                    (m, tools)
                    for m in plain_statements(step.content or "", _PROMISE)
                    if (tools := facts.writes_carrying(m.group(1)))
                ),
                (None, frozenset()),
            )
            if promise is None or transferred or any(c.step >= step.index and c.name in tools for c in facts.calls):
                continue
            if any(r > step.index for r in refusals):
                continue
            yield context.finding(
                self.name,
                "missing_action",
                step.index,
                "You said you would do it: make the tool call, or tell the user why you cannot.",
                f"the agent said {promise.group()!r} and no {'/'.join(sorted(tools))} call followed",
                confidence=0.6,
                textual=True,
            )
            break

        # 2. The user confirmed the agent's proposal, and the run ended without the write.
        last_user = facts.user_messages[-1] if facts.user_messages else None
        if last_user is not None and not any(c.step > last_user.index for c in facts.writes):
            asked = facts.previous_step(last_user.index, kind=AssistantMessage)
            if (
                isinstance(asked, AssistantMessage)
                and asked.content
                and _ASKS_TO_PROCEED.search(asked.content)
                and asked.index not in refusals
                and any(p.search(last_user.content or "") for p in policy.confirmations)
                and not _DECLINES.search((last_user.content or "")[:20])
                and not any(c.step > asked.index for c in succeeded)
                and not transferred
            ):
                yield context.finding(
                    self.name,
                    "missing_action",
                    last_user.index,
                    "The user confirmed: carry out the action they agreed to before ending the conversation.",
                    f"the agent asked {asked.content.strip()[:100]!r}, the user answered "
                    f"{(last_user.content or '').strip()[:60]!r}, and no state-changing call followed",
                    confidence=0.6,
                    textual=True,
                )

        # 3. The user asked, in words that name one of this agent's writes, for a change, and the run ended
        #    with no change made, no refusal and no hand-off. (Which write carries which request is the
        #    agent's to judge, so only "nothing at all" is.)
        if succeeded or refused or transferred or not (policy.writes.names or policy.writes.patterns):
            return
        for message in facts.user_messages:
            for word in _WORDS.findall((message.content or "").lower()):
                tools = facts.writes_carrying(word)
                if not tools:
                    continue
                yield context.finding(
                    self.name,
                    "missing_action",
                    run.steps[-1].index,
                    f"The user asked to {word} and the conversation ended without it: carry it out after "
                    "confirmation, or explain why it cannot be done.",
                    f"user at step {message.index}: {(message.content or '').strip()[:120]!r}; no successful "
                    f"{'/'.join(sorted(tools))} call and no refusal",
                    confidence=0.45,
                    textual=True,
                )
                return
