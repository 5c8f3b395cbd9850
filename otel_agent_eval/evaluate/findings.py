"""What an evaluation says about a run: findings, the run's outcome, a failure score and the root cause.

A :class:`Finding` is one failure at one step. An :class:`Evaluation` is the verdict on a run:

* ``outcome``: ``terminal`` when any failure is terminal (or the application marked the run failed),
  ``recovered`` when there were failures and all were recovered, ``success`` otherwise; only findings with
  a confidence of at least :data:`DECISIVE_CONFIDENCE` decide it (weaker ones are suspicions: reported, and
  counted in the score);
* ``failure_score`` in [0, 1]: how likely the run failed, for ranking and ROC curves: the chance that at
  least one finding is real, counting recovered findings at a quarter of their confidence;
* ``root_cause_step``: the step of the earliest terminal failure, where an in-loop check must fire.

Findings below :data:`DECISIVE_CONFIDENCE` are *suspicions*: reported apart from the failures, and counted
in the failure score, but they decide no outcome, so that every terminal failure listed makes its run
terminal. Findings from the evaluator's own errors (mode ``evaluator_error``, category ``evaluator``) are
listed with the failures but never count as failures of the agent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..model import AgentRun
from .taxonomy import TAXONOMY

FailureOutcome = Literal["terminal", "recovered"]
RunOutcome = Literal["success", "recovered", "terminal"]

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
        )


@dataclass(frozen=True)
class Evaluation:
    """The verdict on one run."""

    run: AgentRun
    findings: tuple[Finding, ...]
    outcome: RunOutcome
    failure_score: float
    root_cause_step: int | None

    @classmethod
    def of(cls, run: AgentRun, findings: Iterable[Finding]) -> Evaluation:
        ordered = tuple(sorted(findings, key=lambda f: (f.step, f.outcome != "terminal", f.mode, f.evaluator)))
        failures = [f for f in ordered if f.counts]
        terminal = [f for f in failures if f.outcome == "terminal"]
        decisive = [f for f in terminal if f.confidence >= DECISIVE_CONFIDENCE]
        recovered = [f for f in failures if f.outcome == "recovered" and f.confidence >= DECISIVE_CONFIDENCE]
        app_failed = run.outcome is not None and not run.outcome.success
        outcome: RunOutcome = "terminal" if decisive or app_failed else ("recovered" if recovered else "success")
        survive = 1.0
        for f in failures:
            weight = 1.0 if f.outcome == "terminal" else RECOVERED_WEIGHT
            survive *= 1.0 - min(max(f.confidence, 0.0), 1.0) * weight
        score = 1.0 if app_failed else 1.0 - survive
        root = min((f.step for f in decisive), default=None)
        return cls(run=run, findings=ordered, outcome=outcome, failure_score=round(score, 6), root_cause_step=root)

    @property
    def failures(self) -> tuple[Finding, ...]:
        """The findings that decide the outcome: confident ones, and the evaluator's own errors."""
        return tuple(f for f in self.findings if not f.counts or f.confidence >= DECISIVE_CONFIDENCE)

    @property
    def suspicions(self) -> tuple[Finding, ...]:
        """Findings below :data:`DECISIVE_CONFIDENCE`: reported and scored, but not failures on their own."""
        return tuple(f for f in self.findings if f.counts and f.confidence < DECISIVE_CONFIDENCE)

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
