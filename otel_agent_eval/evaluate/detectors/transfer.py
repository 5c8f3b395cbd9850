"""Hand-offs to a human while the request was within what the agent's tools can do."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...model import AgentRun, UserMessage
from ..engine import RunContext
from ..findings import Finding

_ASKED_FOR_HUMAN = re.compile(
    r"\b(human|real person|representative|supervisor|manager|live agent|someone else)\b", re.I
)


class TransferDetector:
    """A transfer to a human agent that the policy's "only when out of scope" rule does not justify."""

    name = "transfer"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        facts = context.facts
        for call in facts.calls:
            if not context.policy.is_transfer(call.name):
                continue
            asked = any(
                _ASKED_FOR_HUMAN.search(s.content or "")
                for s in run.steps
                if isinstance(s, UserMessage) and s.index < call.step
            )
            blocked = any(c.failed and context.policy.is_write(c.name) for c in facts.calls if c.step < call.step)
            refused = any(r < call.step for r in facts.refusals)
            if asked or blocked or refused:
                # The user insisted after a refusal, or the tools could not do it: a transfer is what the
                # policy asks for then, and nothing here says the request was in scope.
                continue
            yield context.finding(
                self.name,
                "unnecessary_transfer",
                call.step,
                "Handle the request yourself when your tools can do it; transfer to a human only when it is out "
                "of your scope, and say why.",
                f"{call.name} at step {call.step}, with no refusal, no failed action and no request for a human "
                "before it",
                confidence=0.45,
                textual=True,
            )
            return
