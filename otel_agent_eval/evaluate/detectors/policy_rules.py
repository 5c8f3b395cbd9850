"""The rules of the agent's written policy, as its policy pack declares them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ...model import AgentRun, AssistantMessage, UserMessage
from ..engine import RunContext
from ..facts import Call
from ..findings import Finding
from ..text import numbers_in
from .arguments import _leaves

_NEGATION = re.compile(
    r"^\W*(no|nope|not|don'?t|do not|wait|hold on|stop|scratch that|forget it|never ?mind)\b", re.IGNORECASE
)
_ASKS = re.compile(
    r"\?|\bconfirm|\bproceed|\bshall i\b|\bwould you like\b|\bdo you want\b|\bok(ay)? to\b", re.IGNORECASE
)


class ConfirmationDetector:
    """A consequential write the user did not agree to: no explicit yes, to a proposal of the agent, right
    before it; a yes given to other details (the call failed and was retried changed, with no new yes); or an
    amount the user was never told."""

    name = "confirmation"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        policy = context.policy
        if not policy.confirm_before_write:
            return
        facts = context.facts
        for call in facts.writes:
            if not context.concerns(call.step):
                continue
            user = facts.last_user_message_before(call.step)
            unseen = _amounts_never_stated(run, call)
            if unseen:
                # The user cannot have agreed to a charge or refund they were never told about.
                shown = ", ".join(f"{path}={value:g}" for path, value in unseen[:3])
                yield context.finding(
                    self.name,
                    "policy_violation",
                    call.step,
                    f"Tell the user the amount first ({shown}) and wait for their yes before calling {call.name}.",
                    f"{call.name} with {shown}: no message before it told the user that amount",
                    confidence=0.55,
                )
                continue
            asked = None
            if user is not None:
                asked = facts.previous_step(user.index, kind=AssistantMessage)
            text = (user.content or "") if user else ""
            confirmed = (
                user is not None
                and any(p.search(text) for p in policy.confirmations)
                and not _NEGATION.search(text)
                and isinstance(asked, AssistantMessage)
                and bool(asked.content and _ASKS.search(asked.content))
            )
            if confirmed:
                yield from self._stale(context, call, user.index if user is not None else -1)
                continue
            why = (
                "no user message before it"
                if user is None
                else f"the user's last message was {text[:120]!r}"
                + ("" if isinstance(asked, AssistantMessage) and asked.content else " and the agent had asked nothing")
            )
            yield context.finding(
                self.name,
                "policy_violation",
                call.step,
                policy.critiques.get(
                    "confirm_before_write",
                    "List the action's details and wait for the user's explicit yes before calling a tool that "
                    "changes anything.",
                ),
                f"{call.name} called without explicit confirmation: {why}",
                confidence=0.4,
                # No user turn at all is structural; a user turn that reads as no yes is a reading of words.
                textual=user is not None,
            )

    def _stale(self, context: RunContext, call: Call, since: int) -> Iterator[Finding]:
        """The yes was given to the details of an earlier attempt of this call, which failed; these differ."""
        earlier = [c for c in context.facts.writes if since < c.step < call.step and c.name == call.name and c.failed]
        if not earlier or call.call.arguments is None or earlier[-1].call.arguments is None:
            return
        changed = _changed_leaves(earlier[-1].call.arguments, call.call.arguments)
        if not changed:
            return
        error = earlier[-1].execution.error if earlier[-1].execution else ""
        yield context.finding(
            self.name,
            "policy_violation",
            call.step,
            f"The user agreed to the details of your first {call.name} call, which failed; you changed "
            f"{', '.join(changed[:3])}: tell the user what changed and why, and wait for their yes again.",
            f"{call.name} retried after {(error or 'an error')[:100]!r} with {', '.join(changed[:4])} changed and "
            "no user message since",
            confidence=0.6,
        )


# Money the call moves: an argument named like an amount holding a number.
_AMOUNT_KEY = re.compile(r"(^|[._\[])amount", re.IGNORECASE)


def _amounts_never_stated(run: AgentRun, call: Call) -> list[tuple[str, float]]:
    """The call's non-zero amounts that no user or agent message up to the call stated."""
    amounts = [
        (path, float(value))
        for path, value in _leaves(call.call.arguments or {})
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value and _AMOUNT_KEY.search(path)
    ]
    if not amounts:
        return []
    said: set[int] = set()
    for step in run.steps:
        if step.index > call.step:
            break
        if isinstance(step, (UserMessage, AssistantMessage)) and step.content:
            said.update(round(n * 100) for n in numbers_in(step.content))
    return [(path, value) for path, value in amounts if round(abs(value) * 100) not in said]


def _changed_leaves(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The argument paths whose values differ, beyond letter case, spacing and a leading "#"."""

    def norm(value: Any) -> Any:
        return value.strip().lower().lstrip("#") if isinstance(value, str) else value

    old = {path: norm(v) for path, v in _leaves(before)}
    new = {path: norm(v) for path, v in _leaves(after)}
    return [path for path in dict.fromkeys([*old, *new]) if old.get(path) != new.get(path)]


class IdentityDetector:
    """Account data read or changed before the user's identity was checked."""

    name = "identity"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        policy = context.policy
        if not policy.identity_before_access:
            return
        for call in context.facts.calls:
            if policy.is_identity(call.name):
                if call.succeeded:
                    return
                continue
            if policy.needs_identity(call.name):
                yield context.finding(
                    self.name,
                    "policy_violation",
                    call.step,
                    policy.critiques.get(
                        "identity_before_access",
                        "Authenticate the user with an identity-check tool before looking up or changing their "
                        "account.",
                    ),
                    f"{call.name} called before any identity check succeeded",
                    confidence=0.6,
                )
                return


class TurnShapeDetector:
    """Several tool calls in one turn, or a tool call and a message to the user in one turn, where forbidden."""

    name = "turn_shape"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        policy = context.policy
        for step in run.steps:
            if not isinstance(step, AssistantMessage) or not step.tool_calls or not context.concerns(step.index):
                continue
            if policy.one_tool_call_per_turn and len(step.tool_calls) > 1:
                yield context.finding(
                    self.name,
                    "policy_violation",
                    step.index,
                    policy.critiques.get("one_tool_call_per_turn", "Make one tool call per turn."),
                    f"{len(step.tool_calls)} tool calls in one turn: {', '.join(c.name for c in step.tool_calls)}",
                    # Parallel reads rarely change an outcome; parallel writes skip a confirmation each.
                    confidence=0.45 if sum(policy.is_write(c.name) for c in step.tool_calls) > 1 else 0.15,
                )
            if policy.no_message_with_tool_call and step.content and step.content.strip():
                yield context.finding(
                    self.name,
                    "policy_violation",
                    step.index,
                    policy.critiques.get(
                        "no_message_with_tool_call", "Either call a tool or answer the user in a turn, not both."
                    ),
                    f"message {step.content.strip()[:100]!r} sent together with a call to {step.tool_calls[0].name}",
                    confidence=0.3,
                )


class PreconditionDetector:
    """A write whose target's state, as the latest tool result shows it, forbids the action."""

    name = "preconditions"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        policy = context.policy
        if not policy.preconditions:
            return
        facts = context.facts
        for call in facts.writes:
            if call.failed or not context.concerns(call.step):
                continue  # a refused call is the tool-error detector's
            args = call.call.arguments or {}
            for rule in policy.preconditions:
                if call.name not in rule.tools or rule.target not in args:
                    continue
                target = args[rule.target]
                seen = facts.state_before(rule.id_field or rule.target, target, call.step, rule.source_tools)
                if seen is None:
                    if rule.field:
                        yield context.finding(
                            self.name,
                            "policy_violation",
                            call.step,
                            rule.critique or f"Look up {target} and check its {rule.field} before calling {call.name}.",
                            f"{call.name} on {rule.target}={target!r} with no earlier tool result showing its "
                            f"{rule.field}",
                            confidence=0.35,
                        )
                    continue
                at, state = seen
                reasons = []
                if rule.field:
                    value = state.get(rule.field)
                    if (rule.allowed is None or value in rule.allowed) and value not in rule.forbidden:
                        continue
                    expected = (
                        f"one of {list(rule.allowed)}" if rule.allowed is not None else f"not {list(rule.forbidden)}"
                    )
                    reasons.append(f"its {rule.field} was {value!r}, the policy requires {expected}")
                if not all(c.holds(args, state) for c in rule.when):
                    continue
                reasons += [c.describe(args, state) for c in rule.when]
                yield context.finding(
                    self.name,
                    "wrong_action",
                    call.step,
                    rule.critique or f"Do not call {call.name} on {target}: its state forbids it.",
                    f"{call.name} on {rule.target}={target!r} (state from step {at}): " + "; ".join(reasons),
                    confidence=0.8,
                )


class ArgumentRuleDetector:
    """Arguments that break a constraint the policy pack puts on a tool beyond its schema."""

    name = "argument_rules"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        rules = context.policy.argument_rules
        if not rules:
            return
        for call in context.facts.calls:
            if call.call.arguments is None or not context.concerns(call.step):
                continue
            for rule in rules:
                if call.name not in rule.tools:
                    continue
                error = next(rule.check.errors(dict(call.call.arguments)), None)
                if error is None:
                    continue
                where = ".".join(str(p) for p in error.absolute_path) or "arguments"
                yield context.finding(
                    self.name,
                    rule.mode,
                    call.step,
                    rule.critique or f"Fix {call.name}: {where}: {error.message}.",
                    f"{call.name}({call.call.arguments_json()[:200]}) breaks a policy rule at {where}: {error.message}",
                    confidence=0.7,
                    recovered=call.failed,  # refused by the tool: nothing changed
                )


class OncePerTargetDetector:
    """A second write of a kind the policy allows once per target (an order modified twice, say)."""

    name = "once_per_target"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        policy = context.policy
        facts = context.facts
        for rule in policy.once_per_target:
            done: dict[str, tuple[str, int]] = {}
            for call in facts.writes:
                if call.name not in rule.tools or not call.succeeded:
                    continue
                target = str((call.call.arguments or {}).get(rule.target))
                if target in done:
                    first, step = done[target]
                    yield context.finding(
                        self.name,
                        "wrong_action",
                        call.step,
                        rule.critique or f"Do not call {call.name} again on {target}: it can be done once.",
                        f"{call.name} on {rule.target}={target!r} after {first} on the same target at step {step}",
                        confidence=0.75,
                    )
                else:
                    done[target] = (call.name, call.step)
