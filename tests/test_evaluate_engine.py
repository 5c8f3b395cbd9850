"""The evaluator interface: findings, outcomes, scores, isolation of a failing evaluator, plugins."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_agent_eval.evaluate import TAXONOMY, Engine, Evaluation, Finding, RunContext
from otel_agent_eval.evaluate.engine import plugin_evaluators
from otel_agent_eval.evaluate.findings import DECISIVE_CONFIDENCE
from otel_agent_eval.evaluate.taxonomy import Taxonomy
from otel_agent_eval.model import AgentRun, ApplicationOutcome, AssistantMessage, ToolCall, ToolExecution, UserMessage

RUN = AgentRun(
    steps=(
        UserMessage(index=0, content="Cancel order #W1, I no longer need it.", span_id="s0"),
        AssistantMessage(index=1, content="Order #W1 is pending. Shall I cancel it?", span_id="s1"),
        UserMessage(index=2, content="Yes.", span_id="s2"),
        AssistantMessage(index=3, tool_calls=(ToolCall("c1", "cancel_order", {"order_id": "#W1"}),), span_id="s3"),
        ToolExecution(index=4, name="cancel_order", call_id="c1", arguments={"order_id": "#W1"}, result="ok"),
        AssistantMessage(index=5, content="Done.", span_id="s5"),
    )
)


class Fixed:
    """An evaluator that reports what it is told to."""

    def __init__(self, name: str, findings: list[tuple[str, int, str, float]]) -> None:
        self.name = name
        self._findings = findings

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        for mode, step, outcome, confidence in self._findings:
            yield context.finding(
                self.name, mode, step, "critique", "evidence", confidence=confidence, recovered=outcome == "recovered"
            )


class Broken:
    name = "broken"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        raise RuntimeError("boom")


def test_taxonomy_has_every_mode_of_the_spec() -> None:
    modes = {m.mode: m.category for m in TAXONOMY}
    assert modes["wrong_action"] == "workflow" and modes["missing_information"] == "user_interaction"
    assert modes["misread_output"] == "tool" and modes["model_failure"] == "system"
    assert set(TAXONOMY.categories) == {"workflow", "user_interaction", "tool", "system", "evaluator"}
    with pytest.raises(KeyError, match="unknown failure mode 'nope'"):
        TAXONOMY["nope"]


def test_a_new_mode_is_one_entry() -> None:
    data = {"categories": {"tool": "x"}, "modes": [{"mode": "rate_limited", "category": "tool", "description": "d"}]}
    assert Taxonomy.from_mapping(data).category_of("rate_limited") == "tool"
    with pytest.raises(ValueError, match="unknown category"):
        Taxonomy.from_mapping({"categories": {}, "modes": data["modes"]})


def test_outcomes_and_score() -> None:
    success = Engine([Fixed("a", [])]).evaluate(RUN)
    assert (success.outcome, success.failure_score, success.root_cause_step) == ("success", 0.0, None)

    recovered = Engine([Fixed("a", [("wrong_arguments", 3, "recovered", 0.8)])]).evaluate(RUN)
    assert recovered.outcome == "recovered" and recovered.root_cause_step is None
    assert recovered.failure_score == pytest.approx(0.8 * 0.25)

    terminal = Engine([Fixed("a", [("wrong_action", 3, "terminal", 0.9), ("loop", 1, "terminal", 0.6)])]).evaluate(RUN)
    assert terminal.outcome == "terminal" and terminal.root_cause_step == 1
    assert terminal.failure_score == pytest.approx(1 - 0.1 * 0.4)
    assert [f.span_id for f in terminal.findings] == ["s1", "s3"]


def test_weak_findings_are_suspicions() -> None:
    weak = DECISIVE_CONFIDENCE - 0.1
    ev = Engine([Fixed("a", [("policy_violation", 3, "terminal", weak)])]).evaluate(RUN)
    assert ev.outcome == "success" and ev.root_cause_step is None
    assert ev.failures == () and [f.mode for f in ev.suspicions] == ["policy_violation"]
    assert ev.failure_score == pytest.approx(weak)
    out = ev.to_dict()
    assert out["failures"] == [] and out["suspicions"][0]["mode"] == "policy_violation"


def test_application_outcome_counts() -> None:
    from dataclasses import replace

    failed = replace(RUN, outcome=ApplicationOutcome(success=False))
    ev = Engine([Fixed("a", [])]).evaluate(failed)
    assert ev.outcome == "terminal" and ev.failure_score == 1.0


def test_a_raising_evaluator_is_isolated() -> None:
    ev = Engine([Broken(), Fixed("ok", [("wrong_action", 3, "terminal", 0.9)])]).evaluate(RUN)
    modes = {(f.evaluator, f.mode) for f in ev.findings}
    assert modes == {("broken", "evaluator_error"), ("ok", "wrong_action")}
    error = next(f for f in ev.findings if f.mode == "evaluator_error")
    assert error.category == "evaluator" and "RuntimeError: boom" in error.evidence
    only_error = Engine([Broken()]).evaluate(RUN)
    assert only_error.outcome == "success"  # the evaluator failed, not the agent
    assert [f["mode"] for f in only_error.to_dict()["failures"]] == ["evaluator_error"]


def test_result_line_has_the_documented_fields() -> None:
    from dataclasses import replace

    from otel_agent_eval.model import RunSource

    run = replace(RUN, source=RunSource("runs.json", 4, "r-4"), trace_id="ab" * 16)
    line = Engine([Fixed("a", [("wrong_action", 3, "terminal", 0.9)])]).evaluate(run).to_dict()
    assert set(line) >= {"source", "trace_id", "outcome", "failure_score", "failures"}
    assert line["source"] == {"file": "runs.json", "index": 4, "id": "r-4"}
    assert set(line["failures"][0]) >= {
        "mode",
        "category",
        "step",
        "span_id",
        "outcome",
        "critique",
        "evidence",
        "evaluator",
        "confidence",
    }
    assert Evaluation.of(run, []).to_dict()["outcome"] == "success"


def test_check_judges_a_proposed_step() -> None:
    history = AgentRun(steps=RUN.steps[:1], system_instructions="Obtain explicit confirmation before any change.")
    proposed = AssistantMessage(index=0, tool_calls=(ToolCall("c1", "cancel_order", {"order_id": "#W1"}),))
    findings = Engine().check(history, proposed)
    # Placed after the history whatever index it came with; judged as the next step.
    assert [(f.mode, f.step) for f in findings] == [("policy_violation", 1)]


def test_plugins_load_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_rules.py").write_text(
        textwrap.dedent(
            """
            class NoRefunds:
                name = "no_refunds"

                def evaluate(self, run, context):
                    for step in run.steps:
                        if getattr(step, "content", None) and "refund" in step.content:
                            yield context.finding(self.name, "policy_violation", step.index,
                                                  "Do not promise refunds.", "said refund", confidence=0.9)
            """
        )
    )
    dist = tmp_path / "my_rules-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rules\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[otel_agent_eval.evaluators]\nno_refunds = my_rules:NoRefunds\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [e.name for e in plugin_evaluators()] == ["no_refunds"]
    run = AgentRun(steps=(AssistantMessage(index=0, content="You will get a refund."),))
    ev = Engine().evaluate(run)
    assert any(f.evaluator == "no_refunds" for f in ev.failures)
    sys.modules.pop("my_rules", None)


def test_the_docs_list_every_mode_and_detector() -> None:
    from conftest import ROOT

    from otel_agent_eval.evaluate.detectors import BUILTIN_DETECTORS

    doc = (ROOT / "docs" / "evaluation.md").read_text()
    for mode in TAXONOMY:
        assert f"`{mode.category}.{mode.mode}`" in doc, mode.mode
    for detector in BUILTIN_DETECTORS:
        assert f"| `{detector.name}` |" in doc, detector.name


class Kinded:
    """An evaluator that reports one finding of a given evidence kind."""

    def __init__(self, name: str, step: int, *, textual: bool, targets: tuple[str, ...] = ()) -> None:
        self.name, self.step, self.textual, self.targets = name, step, textual, targets

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        yield context.finding(
            self.name,
            "wrong_information",
            self.step,
            "c",
            "e",
            confidence=0.9,
            textual=self.textual,
            targets=self.targets,
        )


def test_a_textual_finding_alone_is_a_suspicion() -> None:
    evaluation = Engine([Kinded("words", 5, textual=True)]).evaluate(RUN)
    assert evaluation.outcome == "success"
    assert [f.evidence_kind for f in evaluation.suspicions] == ["textual"]
    assert evaluation.to_dict()["suspicions"][0]["evidence_kind"] == "textual"
    assert Engine([Kinded("facts", 5, textual=False)]).evaluate(RUN).outcome == "terminal"


def test_a_textual_finding_is_corroborated_by_a_structural_one_on_its_step_or_target() -> None:
    same_step = Engine([Kinded("words", 5, textual=True), Kinded("facts", 5, textual=False)]).evaluate(RUN)
    assert len(same_step.failures) == 2
    # The claim at step 5 points at the call at step 3; a structural finding there backs it, and the root
    # cause is the call, not the message that reported it.
    pointed = Engine(
        [Kinded("words", 5, textual=True, targets=("step:3",)), Kinded("facts", 3, textual=False)]
    ).evaluate(RUN)
    assert {f.evaluator for f in pointed.failures} == {"words", "facts"}
    assert pointed.root_cause_step == 3
    elsewhere = Engine([Kinded("words", 5, textual=True), Kinded("facts", 1, textual=False)]).evaluate(RUN)
    assert [f.evaluator for f in elsewhere.failures] == ["facts"]
    # Two findings of one evaluator do not corroborate each other.
    alone = Engine([Kinded("words", 5, textual=True), Kinded("words", 5, textual=True)]).evaluate(RUN)
    assert alone.failures == ()


def test_two_suspicions_do_not_corroborate_a_heuristic() -> None:
    """A structural finding too weak to decide alone does not back a textual one either."""

    class Weak:
        name = "weak"

        def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
            yield context.finding(self.name, "policy_violation", 5, "c", "e", confidence=0.3)

    evaluation = Engine([Kinded("words", 5, textual=True), Weak()]).evaluate(RUN)
    assert evaluation.outcome == "success" and evaluation.failures == ()
