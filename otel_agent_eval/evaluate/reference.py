"""Reference-based evaluation, for benchmark analysis: the run against its expected actions and outputs.

Given what a benchmark expects (the state-changing actions with their arguments, and the facts the agent
had to tell the user), it labels exactly:

* ``wrong_arguments``: the expected tool was called on the same target, but with other arguments;
* ``wrong_action``: a state change that was not expected (another action, or another target);
* ``missing_action``: an expected state change that never happened;
* ``missing_information``: an expected output the agent never said.

Only state changes count (reads leave no trace in the outcome), and only those that succeeded. Every such
finding is terminal: the final state, or what the user was told, differs from the expected one. Findings
of the reference-free detectors are not included: this mode says what a benchmark's grader would say, and
where.

:func:`first_divergence` says where a run first departs from its reference: the yardstick for the
reference-free evaluator's ``root_cause_step`` on failed runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..model import AgentRun, AssistantMessage, ExpectedAction
from .engine import RunContext
from .facts import Call, RunFacts
from .findings import Finding
from .policy import PackLibrary, ResolvedPolicy

_IDENTIFIER_KEY = re.compile(r"(^|_)id$")


def _normal(value: Any) -> Any:
    """Arguments compared as data: numbers as floats, strings trimmed, objects by key."""
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normal(v) for v in value]
        # A list of plain values (item ids) is a set to the grader; a list of objects (flights) keeps its order.
        if all(isinstance(v, (str, float)) for v in items):
            return sorted(items, key=str)
        return items
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return value.strip()
    return value


def _covers(actual: Any, expected: Any) -> bool:
    """``actual`` has every expected value; keys the expectation does not name are ignored at every level
    (a tool ignores fields it does not take, so they change nothing)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _covers(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_covers(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


def same_arguments(expected: Mapping[str, Any], actual: Mapping[str, Any] | None) -> bool:
    if actual is None:
        return False
    return _covers(_normal(dict(actual)), _normal(dict(expected)))


def _target(arguments: Mapping[str, Any] | None) -> tuple[str, Any] | None:
    """The first identifier argument (order_id, reservation_id, user_id, ...): what the action acts on."""
    for key, value in (arguments or {}).items():
        if _IDENTIFIER_KEY.search(key) and isinstance(value, (str, int)):
            return key, value
    return None


def _said(text: str, output: str) -> bool:
    """Whether the agent's messages contain an expected output (case and thousands separators ignored)."""
    return output.lower().replace(",", "") in text


class ReferenceEvaluator:
    """Compares a run's successful state changes and its messages with the benchmark's expectations."""

    name = "reference"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        reference = run.reference
        if reference is None:
            return
        policy = context.policy
        done: list[Call] = [c for c in context.facts.writes if c.succeeded]
        expected = [a for a in reference.actions if policy.is_write(a.name)]
        unmatched_done = list(done)
        unmatched_expected: list[ExpectedAction] = []
        for action in expected:
            match = next(
                (
                    c
                    for c in unmatched_done
                    if c.name == action.name and same_arguments(action.arguments, c.call.arguments)
                ),
                None,
            )
            if match is not None:
                unmatched_done.remove(match)
            else:
                unmatched_expected.append(action)
        last = run.steps[-1].index if run.steps else 0

        for action in unmatched_expected:
            target = _target(action.arguments)
            near = next(
                (
                    c
                    for c in unmatched_done
                    if c.name == action.name and (target is None or _target(c.call.arguments) == target)
                ),
                None,
            )
            if near is not None:
                unmatched_done.remove(near)
                diff = self._diff(action.arguments, near.call.arguments or {})
                yield context.finding(
                    self.name,
                    "wrong_arguments",
                    near.step,
                    f"Call {action.name} with the arguments the user asked for: {diff}.",
                    f"expected {action.name}({_json(action.arguments)}), "
                    f"called {near.name}({near.call.arguments_json()[:300]})",
                    confidence=1.0,
                )
            else:
                yield context.finding(
                    self.name,
                    "missing_action",
                    last,
                    f"The request needed {action.name}({_json(action.arguments)[:160]}), which was never done.",
                    f"expected {action.name}({_json(action.arguments)}) and no successful call matches it",
                    confidence=1.0,
                )
        for call in unmatched_done:
            yield context.finding(
                self.name,
                "wrong_action",
                call.step,
                f"Do not call {call.name} here: the request did not need this change.",
                f"unexpected {call.name}({call.call.arguments_json()[:300]}); expected state changes: "
                + (", ".join(a.name for a in expected) or "none"),
                confidence=1.0,
            )
        said = " ".join(
            (s.content or "").lower().replace(",", "") for s in run.steps if isinstance(s, AssistantMessage)
        )
        for output in reference.outputs:
            if not _said(said, output):
                yield context.finding(
                    self.name,
                    "missing_information",
                    last,
                    f"Tell the user {output!r}: they needed this information.",
                    f"expected output {output!r} appears in no message of the agent",
                    confidence=1.0,
                )

    @staticmethod
    def _diff(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> str:
        keys = sorted(expected)
        parts = [
            f"{k}={_json(expected.get(k))} (not {_json(actual.get(k))})"
            for k in keys
            if not _covers(_normal(actual.get(k)), _normal(expected.get(k)))
        ]
        return "; ".join(parts)[:300] or "the arguments differ"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


_library: PackLibrary | None = None


def _default_policy(run: AgentRun) -> ResolvedPolicy:
    global _library
    if _library is None:
        _library = PackLibrary.with_builtins()
    return _library.policy_for(run.system_instructions).for_tools(run.tool_definitions)


def first_divergence(run: AgentRun, *, policy: ResolvedPolicy | None = None) -> int | None:
    """The index of the step where the run first departs from its reference; ``None`` when it does not, or
    when the run has no reference (or no step).

    Only successful state changes count, compared as :class:`ReferenceEvaluator` compares them (the tool's
    name, and :func:`same_arguments`), with the writes of ``policy`` (by default the built-in pack chosen by
    the run's system instructions and tool definitions):

    * the first successful write that matches no expected write still to be done (another tool, or other
      arguments) diverges at the step that asked for it. A write matches the next expected one, or any later
      one still undone: the order of independent changes is not held against the run, as the grader compares
      final states. A write repeated after its expectation was met matches nothing and diverges;
    * when every write made matches but some expected ones were never done, or an expected output was never
      said, the run diverges at its last assistant step: where it stopped without them (the request for the
      missing action may come late in the conversation, so no earlier step is known to be the one). When that
      step is the last matching write itself, the run diverges at its last step, after it.

    A write that failed changed nothing and is no divergence (its retry is judged instead).

    >>> from otel_agent_eval.model import AgentRun, AssistantMessage, ExpectedAction, Reference, ToolCall
    >>> from otel_agent_eval.model import ToolExecution, UserMessage
    >>> def cancel(order_id, reason):
    ...     return ToolCall("c", "cancel_pending_order", {"order_id": order_id, "reason": reason})
    >>> def run(*calls):
    ...     steps = [UserMessage(index=0, content="Cancel #W1: I ordered it by mistake.")]
    ...     for call in calls:
    ...         steps += [AssistantMessage(index=len(steps), tool_calls=(call,)),
    ...                   ToolExecution(index=len(steps) + 1, name=call.name, call_id="c", arguments=call.arguments)]
    ...     steps.append(AssistantMessage(index=len(steps), content="Done."))
    ...     expected = ExpectedAction("cancel_pending_order", {"order_id": "#W1", "reason": "ordered by mistake"})
    ...     return AgentRun(steps=tuple(steps), reference=Reference(reward=0.0, actions=(expected,)))
    >>> first_divergence(run(cancel("#W1", "ordered by mistake"))) is None
    True
    >>> first_divergence(run(cancel("#W1", "no longer needed")))   # the wrong call, not the message after it
    1
    >>> first_divergence(run())                                    # never done: where the run stopped
    1
    """
    reference = run.reference
    if reference is None:
        return None
    if policy is None:
        policy = _default_policy(run)
    expected: list[ExpectedAction] = [a for a in reference.actions if policy.is_write(a.name)]
    last_match: Call | None = None
    for call in RunFacts(run, policy).writes:
        if not call.succeeded:
            continue
        match = next(
            (a for a in expected if a.name == call.name and same_arguments(a.arguments, call.call.arguments)), None
        )
        if match is None:
            return call.step
        expected.remove(match)
        last_match = call
    said = " ".join((s.content or "").lower().replace(",", "") for s in run.steps if isinstance(s, AssistantMessage))
    if not expected and all(_said(said, output) for output in reference.outputs):
        return None
    if not run.steps:
        return None
    last_assistant = next((s.index for s in reversed(run.steps) if isinstance(s, AssistantMessage)), None)
    if last_assistant is None or (last_match is not None and last_assistant <= last_match.step):
        return run.steps[-1].index
    return last_assistant
