"""Where a run first departs from its reference (issue 9, item 6): the yardstick for ``root_cause_step``.

Hand-made runs pin the rule down (the wrong call, not the message that reported it; a missing action where the
run stopped); on the development data the divergence agrees with what reference mode finds, run by run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, RECORDED_FILES

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.evaluate.reference import ReferenceEvaluator, first_divergence
from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.model import (
    AgentRun,
    AssistantMessage,
    ExpectedAction,
    Reference,
    Step,
    ToolCall,
    ToolExecution,
    UserMessage,
)

RETAIL_POLICY = (DATA / "tau-bench" / "retail-policy.md").read_text()
CANCEL = "cancel_pending_order"
READ = "get_order_details"


def cancel(order_id: str, reason: str = "ordered by mistake") -> tuple[str, dict[str, Any]]:
    return CANCEL, {"order_id": order_id, "reason": reason}


def read(order_id: str) -> tuple[str, dict[str, Any]]:
    return READ, {"order_id": order_id}


class Script:
    """A run written turn by turn: the user asks, the agent calls tools (each answered), the agent speaks."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def user(self, text: str) -> Script:
        self.steps.append(UserMessage(index=len(self.steps), content=text))
        return self

    def say(self, text: str) -> Script:
        self.steps.append(AssistantMessage(index=len(self.steps), content=text))
        return self

    def call(self, *calls: tuple[str, Mapping[str, Any]], error: str | None = None) -> Script:
        ids = [f"c{len(self.steps)}_{i}" for i in range(len(calls))]
        tool_calls = tuple(ToolCall(id=i, name=n, arguments=a) for i, (n, a) in zip(ids, calls, strict=True))
        self.steps.append(AssistantMessage(index=len(self.steps), tool_calls=tool_calls))
        for call in tool_calls:
            self.steps.append(
                ToolExecution(
                    index=len(self.steps),
                    name=call.name,
                    call_id=call.id,
                    arguments=call.arguments,
                    result=None if error else '{"status": "ok"}',
                    error=error,
                )
            )
        return self

    def run(
        self, *expected: tuple[str, Mapping[str, Any]], outputs: tuple[str, ...] = (), reward: float = 0.0
    ) -> AgentRun:
        reference = Reference(reward=reward, actions=tuple(ExpectedAction(n, a) for n, a in expected), outputs=outputs)
        return AgentRun(steps=tuple(self.steps), system_instructions=RETAIL_POLICY, reference=reference)


def opening() -> Script:
    return Script().user("Cancel #W1 and #W2, I ordered them by mistake.").call(read("#W1"), read("#W2"))


def test_a_run_that_does_what_was_expected_does_not_diverge() -> None:
    run = opening().say("Cancel both? (yes/no)").user("yes").call(cancel("#W1"), cancel("#W2")).say("Done.")
    assert first_divergence(run.run(cancel("#W1"), cancel("#W2"), read("#W1"))) is None  # reads do not count


def test_the_order_of_independent_changes_is_not_held_against_the_run() -> None:
    run = opening().call(cancel("#W2")).call(cancel("#W1")).say("Both are cancelled.")
    assert first_divergence(run.run(cancel("#W1"), cancel("#W2"))) is None


def test_wrong_arguments_diverge_at_the_call_not_the_report() -> None:
    script = opening().say("Cancel both?").user("yes").call(cancel("#W1", "no longer needed"))  # step 6
    script.call(cancel("#W2")).say("Both are cancelled.")
    assert first_divergence(script.run(cancel("#W1"), cancel("#W2"))) == 6


def test_a_wrong_tool_diverges_at_its_call() -> None:
    script = opening().call(("return_delivered_order_items", {"order_id": "#W1", "item_ids": ["1"]}))  # step 4
    script.say("Your return is on its way.")
    assert first_divergence(script.run(cancel("#W1"), cancel("#W2"))) == 4


def test_the_first_of_several_departures_counts() -> None:
    script = opening().call(cancel("#W1")).call(cancel("#W3")).call(cancel("#W2", "other"))  # steps 4, 6, 8
    assert first_divergence(script.say("Done.").run(cancel("#W1"), cancel("#W2"))) == 6


def test_a_change_repeated_after_it_was_done_diverges() -> None:
    script = opening().call(cancel("#W1")).call(cancel("#W1")).say("Done.")  # the second call is step 6
    assert first_divergence(script.run(cancel("#W1"))) == 6


def test_an_unexpected_change_diverges_even_when_nothing_was_expected() -> None:
    script = Script().user("Where is #W1?").call(read("#W1")).call(cancel("#W1")).say("I cancelled it.")
    assert first_divergence(script.run()) == 3


def test_a_missing_change_diverges_where_the_run_stopped() -> None:
    script = opening().call(cancel("#W1")).say("#W1 is cancelled.").user("And #W2?").say("Anything else?")
    run = script.user("###STOP###").run(cancel("#W1"), cancel("#W2"))
    assert first_divergence(run) == 8  # the last assistant step, not the user's stop after it


def test_a_run_that_ends_on_its_last_matching_write_diverges_after_it() -> None:
    script = opening().call(cancel("#W1"))  # step 4, its result step 5, and the run ends
    assert first_divergence(script.run(cancel("#W1"), cancel("#W2"))) == 5


def test_nothing_done_at_all() -> None:
    script = opening().say("I cannot cancel orders, sorry.")
    assert first_divergence(script.run(cancel("#W1"))) == 4


def test_a_failed_write_changed_nothing() -> None:
    fixed = opening().call(cancel("#W1", "no longer needed"), error="Error: invalid reason").call(cancel("#W1"))
    assert first_divergence(fixed.say("Done.").run(cancel("#W1"))) is None
    given_up = opening().call(cancel("#W1"), error="Error: order not found").say("I could not cancel it.")
    assert first_divergence(given_up.run(cancel("#W1"))) == 6


def test_an_expected_output_never_said_diverges_where_the_run_stopped() -> None:
    script = opening().say("Both orders are pending.").user("Thanks.").say("You're welcome.")
    assert first_divergence(script.run(outputs=("$1,234.50",))) == 6
    said = opening().say("The total is $1234.50.").user("Thanks.").say("You're welcome.")
    assert first_divergence(said.run(outputs=("$1,234.50",))) is None


def test_no_reference_or_no_step() -> None:
    script = opening().call(cancel("#W1"))
    assert first_divergence(AgentRun(steps=tuple(script.steps))) is None
    assert first_divergence(AgentRun(steps=(), reference=Reference(actions=(ExpectedAction(*cancel("#W1")),)))) is None


def test_the_writes_are_the_policys() -> None:
    """A tool the policy in force does not count as a write changes nothing, expected or not."""
    from otel_agent_eval.evaluate.policy import PolicyPack

    reads_only = PolicyPack.from_mapping({"name": "reads", "tools": {"writes": {"names": ["nothing"]}}})
    script = opening().call(cancel("#W3")).say("Done.")
    run = script.run(cancel("#W1"))
    assert first_divergence(run) == 4
    assert first_divergence(run, policy=reads_only.resolve(None)) is None


# --- the development data ---------------------------------------------------------------------------------

_WRONG = {"wrong_action", "wrong_arguments"}


def _runs(path: Path) -> list[AgentRun]:
    domain = "airline" if "airline" in path.name else "retail"
    tools = load_tools(DATA / "tau-bench" / f"{domain}-tools.json")
    return [r for r in load_runs(path, tools=tools) if isinstance(r, AgentRun)]


@pytest.fixture(scope="module")
def development() -> list[tuple[AgentRun, int | None, list[tuple[str, int]]]]:
    engine = Engine([ReferenceEvaluator()])
    out = []
    for path in RECORDED_FILES:
        for run in _runs(path):
            context = engine.context(run)
            findings = [(f.mode, f.step) for f in ReferenceEvaluator().evaluate(run, context)]
            out.append((run, first_divergence(run, policy=context.policy), findings))
    return out


def test_every_development_run_has_a_reference(
    development: list[tuple[AgentRun, int | None, list[tuple[str, int]]]],
) -> None:
    assert len(development) == 180
    assert all(run.reference is not None and run.reference.reward is not None for run, _, _ in development)


def test_a_run_diverges_exactly_when_reference_mode_finds_a_failure(
    development: list[tuple[AgentRun, int | None, list[tuple[str, int]]]],
) -> None:
    for run, divergence, findings in development:
        assert (divergence is None) == (not findings), (run.source, divergence, findings)


def test_a_wrong_change_diverges_at_reference_modes_first_wrong_call(
    development: list[tuple[AgentRun, int | None, list[tuple[str, int]]]],
) -> None:
    wrong_runs = 0
    for run, divergence, findings in development:
        wrong = [step for mode, step in findings if mode in _WRONG]
        if wrong:
            wrong_runs += 1
            assert divergence == min(wrong), run.source
            step = next(s for s in run.steps if s.index == divergence)
            assert isinstance(step, AssistantMessage) and step.tool_calls
        elif divergence is not None:  # only missing actions or outputs: where the run stopped
            last_assistant = max(s.index for s in run.steps if isinstance(s, AssistantMessage))
            assert divergence in (last_assistant, run.steps[-1].index), run.source
    assert wrong_runs >= 40


def test_failed_runs_diverge_and_successful_ones_mostly_do_not(
    development: list[tuple[AgentRun, int | None, list[tuple[str, int]]]],
) -> None:
    failed = [d for run, d, _ in development if run.reference and run.reference.reward == 0]
    succeeded = [d for run, d, _ in development if run.reference and run.reference.reward == 1]
    assert len(failed) == 81 and len(succeeded) == 99
    # One failed airline run (task 2, trial 1) made every expected change and said every expected output:
    # its grader failed it for something its reference does not hold.
    assert sum(d is not None for d in failed) == 80
    # Three successful retail runs differ from their reference in a way the grader accepted.
    assert sum(d is not None for d in succeeded) <= 3


def test_a_divergence_is_a_step_index_not_a_position() -> None:
    """Runs read from spans may carry step indices that start anywhere: the rule uses indices, not positions."""
    script = opening().call(cancel("#W1", "no longer needed")).say("Done.")
    run = script.run(cancel("#W1"))
    shifted = AgentRun(
        steps=tuple(_shift(s, 100) for s in run.steps),
        system_instructions=run.system_instructions,
        reference=run.reference,
    )
    assert first_divergence(shifted) == first_divergence(run) + 100  # type: ignore[operator]


def _shift(step: Step, by: int) -> Step:
    from dataclasses import replace

    return replace(step, index=step.index + by)
