"""What an evaluation says about a run: findings, the run's outcome, a failure score and the root cause.

A :class:`Finding` is one failure at one step. An :class:`Evaluation` is the verdict on a run:

* ``outcome``: ``terminal`` when any deciding failure is terminal (or the application marked the run
  failed), ``recovered`` when there were deciding failures and all were recovered, ``success`` otherwise;
* ``failure_score`` in [0, 1]: how likely the run failed, for ranking, ROC curves and thresholds; with a
  calibration (:mod:`otel_agent_eval.evaluate.calibration`) a fitted probability, otherwise the chance
  that at least one finding is real, counting recovered findings at a quarter of their confidence;
* ``root_cause_step``: the step of the earliest deciding terminal failure, where an in-loop check must fire.

A finding *decides* the outcome (:func:`decides`) when its confidence is at least
:data:`DECISIVE_CONFIDENCE` and its evidence is structural, or textual and corroborated by an independent
structural finding at the same step or about the same target. The others are *suspicions*: reported apart
from the failures and counted in the score, but they decide no outcome, so that every terminal failure
listed makes its run terminal and rests on evidence a reviewer can check in the trace. Findings from the
evaluator's own errors (mode ``evaluator_error``, category ``evaluator``) are listed with the failures but
never count as failures of the agent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..model import AgentRun
from .taxonomy import TAXONOMY

FailureOutcome = Literal["terminal", "recovered"]
RunOutcome = Literal["success", "recovered", "terminal"]
EvidenceKind = Literal["structural", "textual", "judge"]
"""What a finding rests on. *Structural*: tool results, schemas, the order of steps, call arguments (a tool
error never fixed, a call that breaks its schema, a precondition a tool result contradicts, a write with no
user turn to confirm it, a claim of a change whose call failed). *Textual*: natural language read by a
heuristic (an amount in a sentence, a promise, a question asked twice). *Judge*: an evaluation model read
the run (:class:`~otel_agent_eval.evaluate.judge.LLMJudge`, when one is configured)."""
EVIDENCE_KINDS: tuple[EvidenceKind, ...] = ("structural", "textual", "judge")

RECOVERED_WEIGHT = 0.25
"""How much a recovered failure counts towards the failure score, relative to a terminal one."""

DECISIVE_CONFIDENCE = 0.5
"""A terminal finding makes the run's outcome terminal only from this confidence on. Weaker findings (a rule
broken in letter that rarely decides the outcome, a heuristic that often misfires) are still reported, and
raise the failure score, but do not condemn a run alone."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One failure, located at one step of a run."""

    mode: str
    step: int
    """The step's index (for recorded runs, the message's position in its run)."""
    outcome: FailureOutcome
    critique: str
    """One sentence addressed to the agent: what went wrong and what to do instead."""
    evidence: str
    """What in the run shows it (quoted values, the rule, the tool result)."""
    evaluator: str
    confidence: float
    span_id: str | None = None
    evidence_kind: EvidenceKind = "structural"
    targets: tuple[str, ...] = ()
    """What the finding is about besides its step: the tool calls' targets (identifier arguments) and the
    steps it points at (``"step:N"``). A textual finding is corroborated by a structural one that shares
    its step or one of its targets."""

    @property
    def category(self) -> str:
        return TAXONOMY.category_of(self.mode)

    @property
    def counts(self) -> bool:
        """Whether this is a failure of the agent (not of the evaluator)."""
        return self.category != "evaluator"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "category": self.category,
            "step": self.step,
            "span_id": self.span_id,
            "outcome": self.outcome,
            "critique": self.critique,
            "evidence": self.evidence,
            "evaluator": self.evaluator,
            "confidence": round(self.confidence, 4),
            "evidence_kind": self.evidence_kind,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Finding:
        return cls(
            mode=str(obj["mode"]),
            step=int(obj["step"]),
            outcome="recovered" if obj.get("outcome") == "recovered" else "terminal",
            critique=str(obj.get("critique", "")),
            evidence=str(obj.get("evidence", "")),
            evaluator=str(obj.get("evaluator", "")),
            confidence=float(obj.get("confidence", 1.0)),
            span_id=obj.get("span_id"),
            evidence_kind=next((k for k in EVIDENCE_KINDS if k == obj.get("evidence_kind")), "structural"),
        )


def corroborated(finding: Finding, others: Iterable[Finding]) -> bool:
    """Whether an independent structural signal backs a textual finding: a terminal structural finding of
    another evaluator, confident enough to decide on its own, at the same step or about one of the same
    targets (a call's target identifier, or the step it points at). Two suspicions do not make a verdict."""
    mine = {f"step:{finding.step}", *finding.targets}
    for other in others:
        if (
            other is finding
            or other.evidence_kind == "textual"
            or other.evaluator == finding.evaluator
            or other.outcome != "terminal"
            or other.confidence < DECISIVE_CONFIDENCE
            or not other.counts
        ):
            continue
        if other.step == finding.step or mine.intersection((f"step:{other.step}", *other.targets)):
            return True
    return False


def origin(finding: Finding) -> int:
    """The earliest step a finding is about: its own, or an earlier one it points at (a claim of success
    points at the call that failed; that call, not the message, is where the run went wrong)."""
    pointed = [int(t[5:]) for t in finding.targets if t.startswith("step:") and t[5:].isdigit()]
    return min([finding.step, *pointed])


def decides(finding: Finding, others: Iterable[Finding]) -> bool:
    """Whether a finding decides a run's outcome: confident enough, and structural, a judge's, or corroborated.

    A textual finding alone is a suspicion, however confident its detector: the trace alone must let a
    reviewer accept the verdict. A judge's finding (an evaluation model the user configured) decides as a
    structural one does: its critique and evidence say what in the trace it rests on.
    """
    if not finding.counts:
        return True
    if finding.confidence < DECISIVE_CONFIDENCE:
        return False
    return finding.evidence_kind != "textual" or corroborated(finding, others)


ScoreFunction = Callable[[AgentRun, Sequence[Finding], Sequence[Finding]], float]
"""``(run, findings, deciding findings) -> P(run failed)``: a calibrated combiner (see
:mod:`otel_agent_eval.evaluate.calibration`) or the default, :func:`noisy_or_score`."""


def noisy_or_score(run: AgentRun, findings: Sequence[Finding], deciding: Sequence[Finding]) -> float:
    """The uncalibrated score: the chance that at least one finding is real, taking each finding's
    confidence as independent, recovered findings at :data:`RECOVERED_WEIGHT`."""
    survive = 1.0
    for f in findings:
        if not f.counts:
            continue
        weight = 1.0 if f.outcome == "terminal" else RECOVERED_WEIGHT
        survive *= 1.0 - min(max(f.confidence, 0.0), 1.0) * weight
    return 1.0 - survive


def combined_score(
    run: AgentRun, findings: Sequence[Finding], deciding: Sequence[Finding], score: ScoreFunction
) -> float:
    """The failure score of detectors' and a judge's findings together: ``score`` (the calibration's combiner,
    fitted on the detectors) over the detectors' findings, then a noisy-or with the judge's, each at its
    confidence (recovered ones at :data:`RECOVERED_WEIGHT`): ``1 - (1 - s) * prod(1 - c * w)``. Without judge
    findings, ``score`` alone."""
    judged = [f for f in findings if f.evidence_kind == "judge" and f.counts]
    if not judged:
        return score(run, findings, deciding)
    detected = [f for f in findings if f.evidence_kind != "judge"]
    value = score(run, detected, [f for f in deciding if f.evidence_kind != "judge"])
    return 1.0 - (1.0 - value) * (1.0 - noisy_or_score(run, judged, judged))


@dataclass(frozen=True)
class Evaluation:
    """The verdict on one run."""

    run: AgentRun
    findings: tuple[Finding, ...]
    outcome: RunOutcome
    failure_score: float
    root_cause_step: int | None
    deciding: tuple[bool, ...] = ()
    """For each of ``findings``: whether it decides the outcome (see :func:`decides`)."""

    @classmethod
    def of(cls, run: AgentRun, findings: Iterable[Finding], *, score: ScoreFunction | None = None) -> Evaluation:
        ordered = tuple(sorted(findings, key=lambda f: (f.step, f.outcome != "terminal", f.mode, f.evaluator)))
        flags = tuple(decides(f, ordered) for f in ordered)
        deciding = [f for f, d in zip(ordered, flags, strict=True) if d and f.counts]
        decisive = [f for f in deciding if f.outcome == "terminal"]
        recovered = [f for f in deciding if f.outcome == "recovered"]
        app_failed = run.outcome is not None and not run.outcome.success
        outcome: RunOutcome = "terminal" if decisive or app_failed else ("recovered" if recovered else "success")
        value = 1.0 if app_failed else combined_score(run, ordered, deciding, score or noisy_or_score)
        root = min((origin(f) for f in decisive), default=None)
        return cls(
            run=run,
            findings=ordered,
            outcome=outcome,
            failure_score=round(min(max(value, 0.0), 1.0), 6),
            root_cause_step=root,
            deciding=flags,
        )

    def _flags(self) -> tuple[bool, ...]:
        return (
            self.deciding
            if len(self.deciding) == len(self.findings)
            else tuple(decides(f, self.findings) for f in self.findings)
        )

    @property
    def failures(self) -> tuple[Finding, ...]:
        """The findings that decide the outcome: confident structural ones (or corroborated textual ones),
        and the evaluator's own errors."""
        return tuple(f for f, d in zip(self.findings, self._flags(), strict=True) if d)

    @property
    def suspicions(self) -> tuple[Finding, ...]:
        """The other findings: reported and scored, but not failures on their own."""
        return tuple(f for f, d in zip(self.findings, self._flags(), strict=True) if not d)

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as one line of ``results.jsonl``."""
        source = self.run.source
        return {
            "source": {
                "file": source.file if source else None,
                "index": source.index if source else None,
                "id": source.id if source else None,
            },
            "trace_id": self.run.trace_id,
            "outcome": self.outcome,
            "failure_score": self.failure_score,
            "root_cause_step": self.root_cause_step,
            "failures": [f.to_dict() for f in self.failures],
            "suspicions": [f.to_dict() for f in self.suspicions],
        }
