"""The same call, or the same question, repeated without progress."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...model import AgentRun, AssistantMessage, UserMessage
from ..engine import RunContext
from ..facts import Call
from ..findings import Finding

_SPACE = re.compile(r"\s+")


class LoopDetector:
    """A tool call repeated with the same arguments and nothing new between; a question asked again verbatim."""

    name = "loop"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        if not context.focus_is(AssistantMessage):
            return
        focused = context.focus_steps
        calls = (
            context.facts.calls
            if focused is None or any(isinstance(s, AssistantMessage) and s.tool_calls for s in focused)
            else []
        )
        # With a focus, only repeats of the focused steps' calls can be reported at them.
        wanted = [c for c in calls if context.concerns(c.step)] if focused is not None else None
        reported: set[tuple[str, str]] = set()
        for call in calls:
            if wanted is not None and not any(w.position > call.position and w.same_request(call) for w in wanted):
                continue
            key = (call.name, call.call.arguments_json())
            if key in reported:
                continue
            same = [c for c in calls[call.position + 1 :] if c.same_request(call) and self._no_news(run, call, c)]
            if not same or (len(same) == 1 and not self._same_result(call, same[0])):
                continue
            reported.add(key)
            last = same[-1]
            progressed = any(
                c.succeeded and not c.same_request(call) and context.policy.is_write(c.name)
                for c in calls[last.position + 1 :]
            )
            yield context.finding(
                self.name,
                "loop",
                same[0].step,
                f"You already called {call.name} with these arguments and got the answer; use it, or change the "
                "arguments, instead of calling it again.",
                f"{call.name}({call.call.arguments_json()[:160]}) made {len(same) + 1} times "
                f"(steps {', '.join(str(c.step) for c in [call, *same])}) with no new user input between",
                confidence=0.6 if len(same) >= 2 else 0.35,
                recovered=progressed or (not context.complete and len(same) < 2),
            )
        yield from self._repeated_questions(run, context)

    @staticmethod
    def _same_result(a: Call, b: Call) -> bool:
        return (a.execution.result if a.execution else None) == (b.execution.result if b.execution else None)

    @staticmethod
    def _no_news(run: AgentRun, first: Call, later: Call) -> bool:
        """No user message between the two calls (a user's new input makes a repeat legitimate)."""
        return not any(isinstance(s, UserMessage) and first.step < s.index < later.step for s in run.steps)

    def _repeated_questions(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        focused = context.focus_steps
        if focused is not None and not any(
            isinstance(s, AssistantMessage) and s.content and "?" in s.content for s in focused
        ):
            return
        seen: dict[str, int] = {}
        for step in run.steps:
            if not isinstance(step, AssistantMessage) or not step.content or "?" not in step.content:
                continue
            text = _SPACE.sub(" ", step.content.strip().lower())
            if len(text) < 20:
                continue
            if text in seen:
                yield context.finding(
                    self.name,
                    "loop",
                    step.index,
                    "You asked this already and the user answered: use the answer, or ask something new.",
                    f"the same message as at step {seen[text]}: {step.content.strip()[:120]!r}",
                    confidence=0.4,
                    textual=True,
                )
            else:
                seen[text] = step.index
