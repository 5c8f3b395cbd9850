"""Tool calls that failed, what kind of failure each was, and whether the agent then fixed the call."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from ...model import AgentRun, AssistantMessage, JSONValue, UserMessage
from ..engine import RunContext
from ..findings import Finding

# The environment failed, not the call: the agent is not to blame.
_SYSTEM = re.compile(
    r"time[d ]?out|timed out|unavailable|internal (server )?error|\b50\d\b|connection|rate.?limit|too many requests|"
    r"service|traceback|exception|overloaded|try again later",
    re.IGNORECASE,
)
# The call was well formed but the state forbids it: the wrong action was attempted. Plain English of
# refusals, no word of any domain.
_STATE = re.compile(
    r"\b(cannot|can ?not|can't|could not) be \w+|\balready\b|not allowed|not permitted|forbidden|not eligible|"
    r"\bineligible|invalid (state|status)|\bstatus\b.{0,40}\b(is|was) not\b",
    re.IGNORECASE,
)


class ToolErrorDetector:
    """Every failed tool execution: a system fault, a forbidden action, or wrong arguments; fixed or not."""

    name = "tool_errors"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        facts = context.facts
        calls = facts.calls
        for call in calls:
            if not call.failed or call.execution is None or not context.concerns(call.step):
                continue
            write = context.policy.is_write(call.name)
            error = call.execution.error or ""
            later = calls[call.position + 1 :]
            targets = _identifiers(call.call.arguments)
            # Fixed: the same tool went through later, or another write succeeded on the same target (the
            # agent switched to the right action), or, for an identity lookup, another identity check passed.
            fixed = next(
                (
                    c
                    for c in later
                    if c.succeeded
                    and (
                        c.name == call.name
                        or (write and context.policy.is_write(c.name) and targets & _identifiers(c.call.arguments))
                        or (context.policy.is_identity(call.name) and context.policy.is_identity(c.name))
                    )
                ),
                None,
            )
            retries = [c for c in later if c.name == call.name]
            last_attempt = retries[-1].step if retries else call.step
            if _SYSTEM.search(error):
                mode = "tool_failure"
                critique = (
                    f"{call.name} failed on the tool's side: retry once, and if it fails again tell the user "
                    "plainly instead of guessing."
                )
                confidence = 0.5
            elif write and _STATE.search(error):
                mode = "wrong_action"
                critique = (
                    f"Check the current state before calling {call.name}: the tool refused because the state "
                    "forbids this action; explain the rule to the user instead."
                )
                confidence = 0.6
            else:
                mode = "wrong_arguments"
                critique = (
                    f"Read the error from {call.name} and fix the argument it names before retrying; do not "
                    "repeat the same call."
                )
                confidence = 0.6 if write else 0.25
            # Without a fix, the agent still recovers by telling the user, after its last attempt, what went
            # wrong instead of pretending: a refused call changed nothing, and a false success claim is the
            # information detector's (structural) finding. Reading "told" from words only ever acquits.
            told = any(r > last_attempt for r in facts.refusals) or _answered_after(run, last_attempt)
            handed_off = any(context.policy.is_transfer(c.name) and c.step > last_attempt for c in later)
            recovered = fixed is not None or told or handed_off
            yield context.finding(
                self.name,
                mode,
                call.step,
                critique,
                f"{call.name}({call.call.arguments_json()[:160]}) -> {error[:200]}"
                + (f"; fixed by the call at step {fixed.step}" if fixed else ""),
                confidence=confidence,
                recovered=recovered,
                targets=[f"step:{call.step}", *sorted(_identifiers(call.call.arguments))],
            )


def _answered_after(run: AgentRun, index: int) -> bool:
    """Whether, after step ``index``, the agent spoke to the user and the user replied: the conversation
    went on with the user knowing (what was said is for the information detector to check)."""
    spoke = False
    for step in run.steps:
        if step.index <= index:
            continue
        if isinstance(step, AssistantMessage) and (step.content or "").strip():
            spoke = True
        elif spoke and isinstance(step, UserMessage):
            return True
    return False


def _identifiers(arguments: Mapping[str, JSONValue] | None) -> set[str]:
    """The identifier-like string values among a call's top-level arguments (its targets)."""
    return {v for k, v in (arguments or {}).items() if isinstance(v, str) and (k.endswith("id") or "_id" in k)}
