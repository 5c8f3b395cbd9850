"""Runs that end with work undone: a promised action never taken, a confirmed action never carried out,
a requested kind of change never made and never refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...model import AgentRun, AssistantMessage
from ..engine import RunContext
from ..findings import Finding
from ..text import plain_statements

_PROMISE = re.compile(
    r"\b(i will|i'll|let me|i am going to|i'm going to)\s+(now\s+)?(go ahead and\s+)?(proceed|cancel|modify|update|"
    r"change|book|process|return|exchange|refund|submit|place|issue|send|apply|make)\b",
)
# Verbs a user uses to ask for a change, and the tool-name verbs that carry it out.
_REQUEST_VERBS = {
    "cancel": ("cancel",),
    "return": ("return",),
    "exchange": ("exchange",),
    "refund": ("refund", "return", "cancel"),
    "book": ("book", "reserve", "create"),
    "change": ("modify", "update", "change", "exchange", "edit"),
    "modify": ("modify", "update", "change", "edit"),
    "update": ("update", "modify", "change", "edit"),
    "upgrade": ("update", "modify", "upgrade"),
}
_REQUEST = re.compile(r"\b(" + "|".join(_REQUEST_VERBS) + r")\w*\b", re.IGNORECASE)


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
            promise = next(plain_statements(step.content or "", _PROMISE), None)
            if promise and not any(c.step >= step.index for c in facts.writes) and not transferred:
                later_refusal = any(r > step.index for r in refusals)
                if later_refusal:
                    continue
                yield context.finding(
                    self.name,
                    "missing_action",
                    step.index,
                    "You said you would do it: make the tool call, or tell the user why you cannot.",
                    f"the agent said {promise.group()!r} and no state-changing call followed",
                    confidence=0.6,
                )
                break

        # 2. The user confirmed the agent's proposal, and the run ended without the write.
        last_user = facts.user_messages[-1] if facts.user_messages else None
        if last_user is not None and not any(c.step > last_user.index for c in facts.writes):
            asked = facts.previous_step(last_user.index, kind=AssistantMessage)
            if (
                isinstance(asked, AssistantMessage)
                and asked.content
                and re.search(
                    r"\b(confirm|proceed|shall i|would you like me to|do you want me to)\b", asked.content, re.I
                )
                and asked.index not in refusals
                and any(p.search(last_user.content or "") for p in policy.confirmations)
                and not re.search(r"\b(no|don'?t|not)\b", (last_user.content or "")[:20], re.I)
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
                )

        # 3. The user asked for a change this agent's tools can make, and the run ended with no change made,
        #    no refusal and no hand-off. (Which write carries which request is domain knowledge — an
        #    "exchange" of a pending order may be a modification — so only "nothing at all" is judged.)
        if succeeded or refused or transferred or not (policy.writes.names or policy.writes.patterns):
            return
        write_names = " ".join(c.name for c in succeeded).lower()
        tool_names = (
            " ".join(t.name for t in run.tool_definitions).lower() or " ".join(c.name for c in facts.calls).lower()
        )
        for message in facts.user_messages:
            for match in _REQUEST.finditer(message.content or ""):
                verb = match.group(1).lower()
                tools = _REQUEST_VERBS[verb]
                if not any(t in tool_names for t in tools):
                    continue  # nothing this agent could have done about it
                if any(t in write_names for t in tools):
                    continue
                yield context.finding(
                    self.name,
                    "missing_action",
                    run.steps[-1].index,
                    f"The user asked to {verb} and the conversation ended without it: carry it out after "
                    "confirmation, or explain why it cannot be done.",
                    f"user at step {message.index}: {(message.content or '').strip()[:120]!r}; no successful "
                    f"{'/'.join(tools)} call and no refusal",
                    confidence=0.45,
                )
                return
