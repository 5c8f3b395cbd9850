"""Tool calls that failed, what kind of failure each was, and whether the agent then fixed the call."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from ...model import AgentRun, JSONValue
from ..engine import RunContext
from ..findings import Finding

# The environment failed, not the call: the agent is not to blame.
_SYSTEM = re.compile(
    r"time[d ]?out|timed out|unavailable|internal (server )?error|\b50\d\b|connection|rate.?limit|too many requests|"
    r"service|traceback|exception|overloaded|try again later",
    re.IGNORECASE,
)
# The call was well formed but the state forbids it: the wrong action was attempted.
_STATE = re.compile(
    r"\bnon-\w+ \w+ cannot|cannot be (cancel|modif|return|exchang|chang|updat|book)|already|not allowed|"
    r"not permitted|forbidden|not eligible",
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
            retried = any(c.name == call.name for c in later)
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
            # Without a fix, the agent still recovers by telling the user what went wrong instead of
            # pretending (a false success claim is the information detector's finding).
            told = any(r > call.step for r in facts.refusals)
            recovered = fixed is not None or (told and not retried)
            yield context.finding(
                self.name,
                mode,
                call.step,
                critique,
                f"{call.name}({call.call.arguments_json()[:160]}) -> {error[:200]}"
                + (f"; fixed by the call at step {fixed.step}" if fixed else ""),
                confidence=confidence,
                recovered=recovered,
            )


def _identifiers(arguments: Mapping[str, JSONValue] | None) -> set[str]:
    """The identifier-like string values among a call's top-level arguments (its targets)."""
    return {v for k, v in (arguments or {}).items() if isinstance(v, str) and (k.endswith("id") or "_id" in k)}
