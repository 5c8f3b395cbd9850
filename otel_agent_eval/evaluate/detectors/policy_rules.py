"""The rules of the agent's written policy, as its policy pack declares them."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...model import AgentRun, AssistantMessage
from ..engine import RunContext
from ..findings import Finding

_NEGATION = re.compile(r"^\W*(no|nope|not|don'?t|do not|wait|hold on|stop|cancel that|never ?mind)\b", re.IGNORECASE)
_ASKS = re.compile(
    r"\?|\bconfirm|\bproceed|\bshall i\b|\bwould you like\b|\bdo you want\b|\bok(ay)? to\b", re.IGNORECASE
)


class ConfirmationDetector:
    """A consequential write with no explicit yes from the user, to a proposal of the agent, right before it."""

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
            )


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
                error = next(iter(rule.validator.iter_errors(dict(call.call.arguments))), None)
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
