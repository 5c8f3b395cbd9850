"""Calibrated confidences and a calibrated ``failure_score``, fitted on runs whose outcome is known.

A detector's built-in confidence is a prior: its author's guess of how often a run it flags has failed. A
:class:`Calibration` replaces that guess with what was measured, and turns the findings of a run into the
probability that the run failed:

* **the precision table**: for each ``(evaluator, mode, outcome)`` of a finding, the runs with at least one
  such finding (``runs``), how many of them failed (``failed``), and the precision shrunk towards the base
  rate by a Beta prior (see :data:`PRIOR_STRENGTH`). :meth:`Calibration.apply` puts that precision in place
  of a finding's confidence when the key has at least :data:`MIN_SUPPORT` runs behind it, and keeps the
  detector's prior otherwise. Precision is counted per run, not per finding: a detector that fires ten times
  in one failed run has been right about one run;
* **the combiner**: an L2-regularised logistic regression over a small set of features of the run and its
  calibrated findings (:func:`features`; by default only the findings' combined evidence, see
  :data:`DEFAULT_FEATURE_GROUPS`), so that ``failure_score`` is a probability: of the runs scored 0.3, about
  three in ten failed, on runs like the ones it was fitted on. A probability carries the base rate of the
  runs it was fitted on: fitted on another team's agents it still ranks, but its level is theirs.

Both are fitted by :func:`fit` and checked by :func:`leave_one_source_out`: fitted on all sources but one
(a source is one file of runs: one agent, one domain, one period), measured on the one left out, in turn.
The out-of-fold scores give honest figures (AUROC, expected calibration error) for a new source; they are
stored in the file beside the fit on all sources.

The package ships one calibration, fitted on the development data (``scripts/calibrate-builtin.sh``
re-estimates it; :func:`default_calibration` loads it). ``Engine()`` uses it by default (``Engine(
calibration=None)`` and ``--calibration none`` do not); ``evaluate --calibration FILE`` and ``serve
--calibration FILE`` take another, and ``otel-agent-eval calibrate`` fits one on a team's own runs and
outcomes, since a precision measured on someone else's agents is only a prior for yours.

The fit is pure Python (Newton's method on a few hundred runs and a few dozen features: milliseconds per
iteration) so that no numerical library becomes a dependency of the processor; the numbers are
deterministic, which lets a test check that the shipped file is the one its command makes.

>>> cal = Calibration.from_dict(Calibration.from_dict(_EXAMPLE).to_dict())
>>> cal.precision_for("schema", "wrong_arguments", "terminal").precision
0.8
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import InputError
from ..ingest.jsonfile import loads, read_text
from ..model import AgentRun, AssistantMessage, ToolExecution, UserMessage
from .findings import FailureOutcome, Finding, decides, noisy_or_score
from .taxonomy import TAXONOMY

FORMAT_VERSION = 2

MIN_SUPPORT = 5
"""A key's measured precision replaces the detector's prior only when at least this many runs had a finding
of that key: below it the measure is mostly noise (one run more or less moves it by a fifth or more)."""

PRIOR_STRENGTH = 5.0
"""How far a likelihood ratio is pulled towards 1 (no information): ``log ratio · n / (n + k)`` with ``n``
the runs that had such a finding. With ``k = 5``, five runs carry half their measured weight, fifty runs
nine tenths."""

L2 = 1.0
"""The penalty on the combiner's coefficients: ``λ/2 · Σ w²`` added to the summed log loss (the intercept is
not penalised). Features are centred but not scaled: an indicator seen in a handful of runs has a small
variance, would need a large coefficient to matter, and the penalty resists it, so a signal seen twice
cannot decide a score. Set before looking at any held-out figure; 5, 20 and 100, tried afterwards, were no
better."""

BINS = 10
"""Equal-width bins of the reliability table and of the expected calibration error."""

FEATURE_GROUPS = ("evidence", "modes", "run")
"""The three groups of features :func:`features` computes (``findings.*``, ``mode.*``, ``run.*``)."""


# --- the file ---------------------------------------------------------------------------------------------

_NUMBER = {"type": "number"}
_COUNT = {"type": "integer", "minimum": 0}
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
_FIGURES = {
    "type": "object",
    "required": ["runs", "failed"],
    "properties": {
        "name": {"type": "string"},
        "runs": _COUNT,
        "failed": _COUNT,
        "auroc": {"type": ["number", "null"]},
        "ece": {"type": ["number", "null"]},
        "brier": {"type": ["number", "null"]},
        "noisy_or_auroc": {"type": ["number", "null"]},
    },
    "additionalProperties": False,
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "otel-agent-eval calibration",
    "type": "object",
    "required": ["version", "base_rate", "min_support", "prior_strength", "precision", "combiner"],
    "properties": {
        "version": {"const": FORMAT_VERSION},
        "base_rate": _PROBABILITY,
        "min_support": _COUNT,
        "prior_strength": {"type": "number", "minimum": 0},
        "confidences": {"enum": ["measured", "detector"]},
        "precision": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["evaluator", "mode", "outcome", "runs", "failed", "ratio", "precision"],
                "properties": {
                    "evaluator": {"type": "string", "minLength": 1},
                    "mode": {"type": "string", "minLength": 1},
                    "outcome": {"enum": ["terminal", "recovered"]},
                    "runs": _COUNT,
                    "failed": _COUNT,
                    "ratio": {"type": "number", "exclusiveMinimum": 0},
                    "precision": _PROBABILITY,
                },
                "additionalProperties": False,
            },
        },
        "combiner": {
            "type": "object",
            "required": ["kind", "intercept", "features"],
            "properties": {
                "kind": {"const": "logistic"},
                "l2": {"type": "number", "minimum": 0},
                "intercept": _NUMBER,
                "features": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "mean", "coefficient"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "pattern": r"^(mode\.[a-z_]+\.[a-z_]+|run\.[a-z_]+|findings\.[a-z_]+)$",
                            },
                            "mean": _NUMBER,
                            "coefficient": _NUMBER,
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
        "fitted": {
            "type": "object",
            "properties": {
                "at": {"type": "string"},
                "command": {"type": "string"},
                "evaluators": {"type": "array", "items": {"type": "string"}},
                "pack": {"type": "string"},
                "features": {"type": "array", "items": {"enum": list(FEATURE_GROUPS)}},
                "sources": {"type": "array", "items": _FIGURES},
            },
        },
        "validation": {
            "type": ["object", "null"],
            "required": ["procedure", "pooled", "sources"],
            "properties": {
                "procedure": {"const": "leave-one-source-out"},
                "pooled": _FIGURES,
                "sources": {"type": "array", "items": _FIGURES},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class Precision:
    """The measured precision of one kind of finding: of the ``runs`` with at least one, ``failed`` failed."""

    evaluator: str
    mode: str
    outcome: FailureOutcome
    runs: int
    failed: int
    precision: float
    """The share of runs with such a finding that fail, at the calibration's failure rate ``b``:
    ``ratio·b / (ratio·b + 1 - b)``."""
    ratio: float = 1.0
    """How many times more common such a finding is among failed runs than among successful ones (a
    likelihood ratio, estimated within each source and pooled: see :func:`precision_table`)."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.evaluator, self.mode, self.outcome)


@dataclass(frozen=True)
class Feature:
    """One input of the combiner: its name (see :func:`features`), its mean on the fitting runs (it is
    centred on it) and its coefficient."""

    name: str
    mean: float
    coefficient: float


@dataclass(frozen=True)
class Combiner:
    """``P(failed) = σ(intercept + Σ coefficient·(value - mean))``: a logistic regression."""

    intercept: float
    features: tuple[Feature, ...]
    l2: float = L2

    def probability(self, values: Mapping[str, float]) -> float:
        z = self.intercept + sum(f.coefficient * (values.get(f.name, 0.0) - f.mean) for f in self.features)
        return _sigmoid(z)


@dataclass(frozen=True)
class Figures:
    """How well scores separate and calibrate on a set of runs (``None`` where undefined: one class only)."""

    name: str
    runs: int
    failed: int
    auroc: float | None
    ece: float | None
    brier: float | None
    noisy_or_auroc: float | None = None
    """The AUROC of the uncalibrated noisy-or score on the same runs, for comparison."""

    @classmethod
    def of(
        cls, name: str, scores: Sequence[float], labels: Sequence[bool], baseline: Sequence[float] | None = None
    ) -> Figures:
        return cls(
            name=name,
            runs=len(labels),
            failed=sum(labels),
            auroc=auroc(scores, labels),
            ece=expected_calibration_error(scores, labels) if labels else None,
            brier=sum((s - y) ** 2 for s, y in zip(scores, labels, strict=True)) / len(labels) if labels else None,
            noisy_or_auroc=auroc(baseline, labels) if baseline is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "runs": self.runs, "failed": self.failed}
        for key in ("auroc", "ece", "brier", "noisy_or_auroc"):
            value = getattr(self, key)
            out[key] = None if value is None else round(value, 4)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Figures:
        return cls(
            name=str(obj.get("name", "")),
            runs=int(obj["runs"]),
            failed=int(obj["failed"]),
            auroc=obj.get("auroc"),
            ece=obj.get("ece"),
            brier=obj.get("brier"),
            noisy_or_auroc=obj.get("noisy_or_auroc"),
        )


@dataclass(frozen=True)
class Validation:
    """Leave-one-source-out figures: pooled over every held-out run, and per held-out source."""

    pooled: Figures
    sources: tuple[Figures, ...]
    procedure: str = "leave-one-source-out"

    def to_dict(self) -> dict[str, Any]:
        return {
            "procedure": self.procedure,
            "pooled": self.pooled.to_dict(),
            "sources": [s.to_dict() for s in self.sources],
        }


@dataclass(frozen=True)
class Calibration:
    """A precision table and a combiner, fitted together (see the module's documentation)."""

    precision: tuple[Precision, ...]
    combiner: Combiner
    base_rate: float
    min_support: int = MIN_SUPPORT
    prior_strength: float = PRIOR_STRENGTH
    fitted: Mapping[str, Any] = field(default_factory=dict)
    """What it was fitted on, when, by which command, with which evaluators."""
    validation: Validation | None = None
    confidences: str = "measured"
    """``measured``: findings' confidences are replaced by the measured precisions (:meth:`apply`), and so
    decide outcomes; ``detector``: the detectors' own confidences stay, the precisions are reported, and
    only the score is calibrated. The shipped calibration is ``detector``: see docs/evaluation.md."""
    _table: dict[tuple[str, str, str], Precision] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_table", {p.key: p for p in self.precision})

    # --- use ------------------------------------------------------------------------------------------------

    def precision_for(self, evaluator: str, mode: str, outcome: str) -> Precision | None:
        return self._table.get((evaluator, mode, outcome))

    def confidence(self, finding: Finding) -> float:
        """The measured precision of the finding's kind, or (too little support, an unknown kind, an
        evaluator error) the detector's own confidence."""
        if not finding.counts:
            return finding.confidence
        entry = self._table.get((finding.evaluator, finding.mode, finding.outcome))
        if entry is None or entry.runs < self.min_support:
            return finding.confidence
        return entry.precision

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings with each confidence replaced by its measured precision (see :meth:`confidence`),
        when :attr:`confidences` is ``measured``; as they are otherwise."""
        if self.confidences != "measured":
            return list(findings)
        out = []
        for f in findings:
            value = self.confidence(f)
            out.append(f if value == f.confidence else replace(f, confidence=value))
        return out

    def score(self, run: AgentRun, findings: Sequence[Finding], deciding: Sequence[Finding]) -> float:
        """``P(run failed)``: the combiner over :func:`features` (a
        :data:`~otel_agent_eval.evaluate.findings.ScoreFunction`). Findings not calibrated yet are
        calibrated first (applying twice changes nothing)."""
        calibrated = self.apply(findings)
        flags = [f in deciding for f in findings]
        return self.combiner.probability(
            features(run, calibrated, [f for f, d in zip(calibrated, flags, strict=True) if d])
        )

    def score_item(self, item: Item) -> float:
        """The score of a run given its findings as the detectors gave them: what an ``Engine`` with this
        calibration scores it."""
        run, findings = item
        return self.combiner.probability(_feature_row(self, run, findings))

    # --- the file ---------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "base_rate": round(self.base_rate, 6),
            "min_support": self.min_support,
            "prior_strength": self.prior_strength,
            "precision": [
                {
                    "evaluator": p.evaluator,
                    "mode": p.mode,
                    "outcome": p.outcome,
                    "runs": p.runs,
                    "failed": p.failed,
                    "ratio": round(p.ratio, 6),
                    "precision": round(p.precision, 6),
                }
                for p in self.precision
            ],
            "combiner": {
                "kind": "logistic",
                "l2": self.combiner.l2,
                "intercept": round(self.combiner.intercept, 6),
                "features": [
                    {"name": f.name, "mean": round(f.mean, 6), "coefficient": round(f.coefficient, 6)}
                    for f in self.combiner.features
                ],
            },
            "confidences": self.confidences,
            "fitted": dict(self.fitted),
            "validation": self.validation.to_dict() if self.validation else None,
        }

    @classmethod
    def from_dict(cls, obj: Any, *, file: str | None = None) -> Calibration:
        """Read a calibration, checked against :data:`SCHEMA`; an ``InputError`` names the file and field."""
        errors = sorted(_VALIDATOR.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
            raise InputError(f"not a valid calibration: {first.message}", file=file, field=where)
        for i, p in enumerate(obj["precision"]):
            if p["failed"] > p["runs"]:
                raise InputError("more failed runs than runs", file=file, field=f"precision/{i}/failed")
        names = [f["name"] for f in obj["combiner"]["features"]]
        for i, name in enumerate(names):
            if name not in FEATURE_NAMES:
                raise InputError(f"unknown feature {name!r}", file=file, field=f"combiner/features/{i}/name")
        if len(set(names)) != len(names):
            raise InputError("a feature is listed twice", file=file, field="combiner/features")
        combiner = obj["combiner"]
        validation = obj.get("validation")
        return cls(
            precision=tuple(
                Precision(
                    evaluator=p["evaluator"],
                    mode=p["mode"],
                    outcome=p["outcome"],
                    runs=p["runs"],
                    failed=p["failed"],
                    precision=float(p["precision"]),
                    ratio=float(p["ratio"]),
                )
                for p in obj["precision"]
            ),
            combiner=Combiner(
                intercept=float(combiner["intercept"]),
                features=tuple(
                    Feature(name=f["name"], mean=float(f["mean"]), coefficient=float(f["coefficient"]))
                    for f in combiner["features"]
                ),
                l2=float(combiner.get("l2", L2)),
            ),
            base_rate=float(obj["base_rate"]),
            min_support=int(obj["min_support"]),
            prior_strength=float(obj["prior_strength"]),
            fitted=dict(obj.get("fitted") or {}),
            confidences=str(obj.get("confidences", "measured")),
            validation=(
                Validation(
                    pooled=Figures.from_dict(validation["pooled"]),
                    sources=tuple(Figures.from_dict(s) for s in validation["sources"]),
                )
                if validation
                else None
            ),
        )

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        text = read_text(path)  # InputError when it cannot be read or is not UTF-8
        try:
            obj = loads(text)  # never a RecursionError: nesting is bounded (jsonfile.MAX_DEPTH)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc}", file=str(path)) from None
        return cls.from_dict(obj, file=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"


@cache
def default_calibration() -> Calibration:
    """The calibration shipped with the package, fitted on the development data by
    ``scripts/calibrate-builtin.sh`` (loaded once)."""
    source = resources.files(__package__).joinpath("calibration.json")
    try:
        obj = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the shipped calibration: {exc}", file=str(source)) from None
    return Calibration.from_dict(obj, file=str(source))


BUILTIN = "builtin"
"""The name that stands for :func:`default_calibration` where a calibration file is asked for."""


NONE = "none"
"""The name that turns calibration off: the detectors' own confidences, the noisy-or score."""


def load_calibration(value: str | Path) -> Calibration | None:
    """A calibration file, ``"builtin"`` for the shipped one, or ``"none"`` for none."""
    if str(value) == NONE:
        return None
    return default_calibration() if str(value) == BUILTIN else Calibration.load(value)


# --- features ---------------------------------------------------------------------------------------------

DEFAULT_FEATURE_GROUPS = ("evidence",)
"""What the combiner uses unless told otherwise: the evidence alone (a Platt scaling of the noisy-or over
calibrated confidences). On the development data, leave-one-source-out, the per-mode and run-level
features made the held-out ranking worse, not better (docs/evaluation.md, "Calibration": a few dozen
failures per source cannot support thirty coefficients, and run sizes differ between domains more than
between failed and successful runs). ``calibrate --features evidence,modes,run`` fits them; the figures it
prints say whether they help on a team's own runs."""

EVIDENCE_FEATURES = ("evidence",)
"""``findings.evidence``: ``-log(1 - noisy-or)`` of the run's (calibrated) findings, recovered ones at
:data:`~otel_agent_eval.evaluate.findings.RECOVERED_WEIGHT` (capped at ``-log(1e-6)``): how much the
findings, taken as independent, say the run failed, on a scale a logistic regression can use."""

MODE_FEATURES = ("terminal", "deciding", "suspicions")
"""Per failure mode (the family of a finding, whichever evaluator found it):

* ``mode.<m>.terminal``: the highest calibrated confidence of its terminal findings (0 without any);
* ``mode.<m>.deciding``: 1 when one of its terminal findings decides the outcome;
* ``mode.<m>.suspicions``: ``log(1 + n)`` of its findings that decide nothing (weak, textual and
  uncorroborated, or recovered)."""

RUN_FEATURES = (
    "steps",
    "user_turns",
    "tool_calls",
    "tool_errors",
    "unresolved_tool_errors",
    "ends_with_answer",
)
"""Observables of the run alone, whatever the detectors say:

* ``run.steps``, ``run.user_turns``, ``run.tool_calls``, ``run.tool_errors``: ``log(1 + n)`` of the steps, the
  user's messages, the agent's tool calls and the executions that failed;
* ``run.unresolved_tool_errors``: ``log(1 + n)`` of the failed executions with no later successful
  execution of the same tool;
* ``run.ends_with_answer``: 1 when the last step is an agent's message with text and no tool call."""

FEATURE_NAMES = frozenset(
    [f"findings.{k}" for k in EVIDENCE_FEATURES]
    + [f"mode.{m.mode}.{k}" for m in TAXONOMY if m.category != "evaluator" for k in MODE_FEATURES]
    + [f"run.{k}" for k in RUN_FEATURES]
)


def features(run: AgentRun, findings: Sequence[Finding], deciding: Sequence[Finding]) -> dict[str, float]:
    """Every feature of a run and its (calibrated) findings that is not zero; ``deciding`` are the findings
    that decide the outcome. Never the application's outcome, never a word of any domain."""
    out: dict[str, float] = {}
    survive = 1.0 - noisy_or_score(run, findings, deciding)
    if survive < 1.0:
        out["findings.evidence"] = -math.log(max(survive, 1e-6))
    suspicions: dict[str, int] = defaultdict(int)
    for f in findings:
        if not f.counts:
            continue
        key = f"mode.{f.mode}"
        if f.outcome == "terminal":
            out[f"{key}.terminal"] = max(out.get(f"{key}.terminal", 0.0), f.confidence)
            if f in deciding:
                out[f"{key}.deciding"] = 1.0
        if f not in deciding:
            suspicions[key] += 1
    for key, n in suspicions.items():
        out[f"{key}.suspicions"] = math.log1p(n)

    user_turns = tool_calls = errors = unresolved = 0
    failed_tools: list[tuple[int, str]] = []
    last_success: dict[str, int] = {}
    for position, step in enumerate(run.steps):
        if isinstance(step, UserMessage):
            user_turns += 1
        elif isinstance(step, AssistantMessage):
            tool_calls += len(step.tool_calls)
        elif isinstance(step, ToolExecution):
            if step.failed:
                errors += 1
                failed_tools.append((position, step.name))
            else:
                last_success[step.name] = position
    unresolved = sum(1 for position, name in failed_tools if last_success.get(name, -1) < position)
    last = run.steps[-1] if run.steps else None
    values = {
        "steps": len(run.steps),
        "user_turns": user_turns,
        "tool_calls": tool_calls,
        "tool_errors": errors,
        "unresolved_tool_errors": unresolved,
    }
    for name, n in values.items():
        if n:
            out[f"run.{name}"] = math.log1p(n)
    if isinstance(last, AssistantMessage) and (last.content or "").strip() and not last.tool_calls:
        out["run.ends_with_answer"] = 1.0
    return out


# --- fitting ----------------------------------------------------------------------------------------------

Item = tuple[AgentRun, Sequence[Finding]]
"""A run and its findings, as the detectors gave them (before any calibration)."""


def failure_rate(labels: Sequence[bool], groups: Sequence[str] | None = None) -> float:
    """The failure rate probabilities are stated at: the mean of the sources' failure rates, each source
    weighing the same (one source: its own rate). A source of many runs of one agent does not set the rate
    for every other agent."""
    if not labels:
        raise ValueError("no runs")
    if groups is None:
        return sum(labels) / len(labels)
    rates = []
    for source in dict.fromkeys(groups):
        mine = [y for y, g in zip(labels, groups, strict=True) if g == source]
        rates.append(sum(mine) / len(mine))
    return sum(rates) / len(rates)


def precision_table(
    items: Sequence[Item],
    labels: Sequence[bool],
    groups: Sequence[str] | None = None,
    *,
    prior_strength: float = PRIOR_STRENGTH,
    rate: float | None = None,
) -> tuple[tuple[Precision, ...], float]:
    """The precision of every kind of finding in ``items`` (see :class:`Precision`), and the failure rate
    it is stated at (:func:`failure_rate`, unless ``rate`` is given).

    A precision measured directly on pooled runs is mostly the base rate of whichever source a detector
    fires in: on runs that fail seven times in ten, a detector that fires at random is "70% precise". So
    what is measured is the **likelihood ratio**: how much more often the finding is seen in failed runs
    than in successful ones, within each source (Mantel-Haenszel over the sources where it occurs, half a
    run added to each cell so that a finding never seen in successful runs has a finite ratio), shrunk
    towards 1 by the support
    (``log ratio · n / (n + k)``, ``n`` the runs with such a finding, ``k`` :data:`PRIOR_STRENGTH`). The
    precision is that ratio at the failure rate ``b``: ``ratio·b / (ratio·b + 1 - b)``.
    """
    _check(items, labels)
    sources = list(groups) if groups is not None else ["all"] * len(items)
    if len(sources) != len(items):
        raise ValueError(f"{len(sources)} groups for {len(items)} runs")
    b = failure_rate(labels, groups) if rate is None else rate
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # source -> [failed, successful]
    cells: dict[tuple[str, str, FailureOutcome], dict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    for (_, findings), label, source in zip(items, labels, sources, strict=True):
        totals[source][0 if label else 1] += 1
        for key in {(f.evaluator, f.mode, f.outcome) for f in findings if f.counts}:
            cells[key][source][0 if label else 1] += 1
    table = []
    for key in sorted(cells):
        numerator = denominator = 0.0
        runs = failed = 0
        for source, (all_failed, all_ok) in totals.items():
            hit_failed, hit_ok = cells[key][source]
            if not hit_failed + hit_ok:
                continue  # a source where this kind never occurs says nothing about its ratio
            runs += hit_failed + hit_ok
            failed += hit_failed
            n = all_failed + all_ok + 2.0
            numerator += (hit_failed + 0.5) * (all_ok + 1.0) / n
            denominator += (hit_ok + 0.5) * (all_failed + 1.0) / n
        ratio = math.exp(math.log(numerator / denominator) * runs / (runs + prior_strength))
        table.append(
            Precision(
                evaluator=key[0],
                mode=key[1],
                outcome="recovered" if key[2] == "recovered" else "terminal",
                runs=runs,
                failed=failed,
                precision=ratio * b / (ratio * b + 1.0 - b),
                ratio=ratio,
            )
        )
    return tuple(table), b


def fit(
    items: Sequence[Item],
    labels: Sequence[bool],
    groups: Sequence[str] | None = None,
    *,
    min_support: int = MIN_SUPPORT,
    prior_strength: float = PRIOR_STRENGTH,
    l2: float = L2,
    feature_groups: Sequence[str] = DEFAULT_FEATURE_GROUPS,
    fitted: Mapping[str, Any] | None = None,
    validate: bool = True,
    rate: float | None = None,
    confidences: str = "measured",
) -> Calibration:
    """Fit a calibration on runs with their (uncalibrated) findings; ``labels[i]`` is True when run ``i``
    failed. With ``groups`` (each run's source) naming two sources or more, the leave-one-source-out figures
    are stored with it (unless ``validate`` is false). ``feature_groups``: which of :data:`FEATURE_GROUPS`
    the combiner uses."""
    prefixes = _prefixes(feature_groups)
    table, base = precision_table(items, labels, groups, prior_strength=prior_strength, rate=rate)
    if confidences not in ("measured", "detector"):
        raise ValueError(f"confidences {confidences!r}: measured or detector")
    draft = Calibration(
        precision=table,
        combiner=Combiner(0.0, ()),
        base_rate=base,
        min_support=min_support,
        prior_strength=prior_strength,
        confidences=confidences,
    )
    rows = [_feature_row(draft, run, findings) for run, findings in items]
    names = sorted({name for row in rows for name in row if name.startswith(prefixes) and _varies(rows, name)})
    means = {name: sum(row.get(name, 0.0) for row in rows) / len(rows) for name in names}
    matrix = [[row.get(name, 0.0) - means[name] for name in names] for row in rows]
    # One intercept per source while fitting, so that the coefficients say what separates failed from
    # successful runs within a source, not which source a run came from (sources fail at different rates:
    # 69% and 15% here). The intercept kept is then moved to the failure rate ``base``: the sources'
    # intercepts, each less its own log-odds of failure, averaged, plus the log-odds of ``base``.
    sources = list(dict.fromkeys(groups)) if groups is not None else []
    fitted_sources = sources[1:]
    dummies = [[1.0 if g == src else 0.0 for src in fitted_sources] for g in (groups or [""] * len(rows))]
    design = [[*row, *d] for row, d in zip(matrix, dummies, strict=True)]
    intercept, all_weights = fit_logistic(design, [float(y) for y in labels], l2=l2, free=len(fitted_sources))
    weights = all_weights[: len(names)]
    if sources:
        shifts = dict(zip(fitted_sources, all_weights[len(names) :], strict=True))
        offsets = []
        for src in sources:
            mine = [y for y, g in zip(labels, groups or (), strict=True) if g == src]
            own = min(max(sum(mine) / len(mine), 1e-3), 1 - 1e-3)
            offsets.append(intercept + shifts.get(src, 0.0) - math.log(own / (1 - own)))
        intercept = sum(offsets) / len(offsets) + math.log(base / (1 - base))
    combiner = Combiner(
        intercept=intercept,
        features=tuple(Feature(n, means[n], w) for n, w in zip(names, weights, strict=True)),
        l2=l2,
    )
    info = dict(fitted or {})
    info.setdefault("at", datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    info.setdefault("features", list(feature_groups))
    validation = None
    if groups is not None:
        sources = list(dict.fromkeys(groups))
        info.setdefault(
            "sources",
            [
                {
                    "name": s,
                    "runs": sum(1 for g in groups if g == s),
                    "failed": sum(1 for g, y in zip(groups, labels, strict=True) if g == s and y),
                }
                for s in sources
            ],
        )
        if validate and len(sources) >= 2:
            validation = leave_one_source_out(
                items,
                labels,
                groups,
                min_support=min_support,
                prior_strength=prior_strength,
                l2=l2,
                feature_groups=feature_groups,
                rate=base,
                confidences=confidences,
            ).validation
    return replace(draft, combiner=combiner, fitted=info, validation=validation)


@dataclass(frozen=True)
class CrossValidated:
    """Out-of-fold scores: each run scored by a calibration fitted without its source."""

    scores: tuple[float, ...]
    baseline: tuple[float, ...]
    """The uncalibrated noisy-or score of each run, for comparison."""
    labels: tuple[bool, ...]
    groups: tuple[str, ...]
    validation: Validation


def leave_one_source_out(
    items: Sequence[Item],
    labels: Sequence[bool],
    groups: Sequence[str],
    *,
    min_support: int = MIN_SUPPORT,
    prior_strength: float = PRIOR_STRENGTH,
    l2: float = L2,
    feature_groups: Sequence[str] = DEFAULT_FEATURE_GROUPS,
    rate: float | None = None,
    confidences: str = "measured",
) -> CrossValidated:
    """Fit on every source but one, score the one left out, for each source in turn. Nothing about the
    held-out source's runs (their findings, their labels, their feature means) enters the fit that scores
    it, except one number: every fold states its probabilities at the same failure rate (``rate``, by
    default :func:`failure_rate` of all the runs), as one deployment states all its agents' scores at
    one rate, so that the pooled figures compare the folds' rankings and not the rates they were fitted at.
    A fold whose training runs are all of one class cannot be fitted: its runs are scored with that rate."""
    _check(items, labels)
    stated = failure_rate(labels, groups) if rate is None else rate
    if len(groups) != len(items):
        raise ValueError(f"{len(groups)} groups for {len(items)} runs")
    sources = list(dict.fromkeys(groups))
    if len(sources) < 2:
        raise ValueError("leave-one-source-out needs two sources or more")
    scores = [0.0] * len(items)
    baseline = [0.0] * len(items)
    for held in sources:
        train = [i for i, g in enumerate(groups) if g != held]
        test = [i for i, g in enumerate(groups) if g == held]
        train_labels = [labels[i] for i in train]
        if all(train_labels) or not any(train_labels):
            for i in test:
                scores[i] = stated
        else:
            cal = fit(
                [items[i] for i in train],
                train_labels,
                [groups[i] for i in train],
                min_support=min_support,
                prior_strength=prior_strength,
                l2=l2,
                feature_groups=feature_groups,
                validate=False,
                rate=stated,
                confidences=confidences,
            )
            for i in test:
                scores[i] = cal.score_item(items[i])
        for i in test:
            run, findings = items[i]
            raw = list(findings)
            baseline[i] = noisy_or_score(run, raw, [f for f in raw if decides(f, raw) and f.counts])
    per_source = tuple(
        Figures.of(
            s,
            [scores[i] for i, g in enumerate(groups) if g == s],
            [labels[i] for i, g in enumerate(groups) if g == s],
            [baseline[i] for i, g in enumerate(groups) if g == s],
        )
        for s in sources
    )
    pooled = Figures.of("pooled", scores, list(labels), baseline)
    return CrossValidated(
        scores=tuple(scores),
        baseline=tuple(baseline),
        labels=tuple(labels),
        groups=tuple(groups),
        validation=Validation(pooled=pooled, sources=per_source),
    )


def _feature_row(cal: Calibration, run: AgentRun, findings: Sequence[Finding]) -> dict[str, float]:
    calibrated = cal.apply(findings)
    deciding = [f for f in calibrated if f.counts and decides(f, calibrated)]
    return features(run, calibrated, deciding)


def _prefixes(groups: Sequence[str]) -> tuple[str, ...]:
    prefix = {"evidence": "findings.", "modes": "mode.", "run": "run."}
    unknown = [g for g in groups if g not in prefix]
    if unknown or not groups:
        raise ValueError(f"feature groups {', '.join(unknown) or '(none)'}: choose from {', '.join(FEATURE_GROUPS)}")
    return tuple(prefix[g] for g in groups)


def _varies(rows: Sequence[Mapping[str, float]], name: str) -> bool:
    values = {row.get(name, 0.0) for row in rows}
    return len(values) > 1


def _check(items: Sequence[Item], labels: Sequence[bool]) -> None:
    if len(items) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(items)} runs")
    if not items:
        raise ValueError("no runs to fit on")


def fit_logistic(
    x: Sequence[Sequence[float]],
    y: Sequence[float],
    *,
    l2: float = L2,
    max_iter: int = 100,
    tol: float = 1e-10,
    free: int = 0,
) -> tuple[float, list[float]]:
    """``(intercept, weights)`` minimising ``Σ logloss + l2/2 · Σ w²`` (the intercept and the last ``free``
    columns, such as per-source intercepts, lightly penalised: a thousandth of ``l2``, enough to keep a
    source of one class finite), by Newton's method (iteratively reweighted least squares) with step
    halving. Both classes must be present (otherwise the intercept has no finite optimum)."""
    n = len(y)
    if n == 0 or len(x) != n:
        raise ValueError("fit_logistic: one row per label, at least one")
    if all(v >= 1.0 for v in y) or all(v <= 0.0 for v in y):
        raise ValueError("fit_logistic: the labels are all of one class")
    d = len(x[0])
    rate = sum(y) / n
    beta = [math.log(rate / (1.0 - rate)), *([0.0] * d)]
    rows = [[1.0, *row] for row in x]

    penalty = [0.0, *([l2] * (d - free)), *([l2 * 1e-3] * free)]

    def objective(b: Sequence[float]) -> float:
        total = 0.5 * sum(p * w * w for p, w in zip(penalty, b, strict=True))
        for row, target in zip(rows, y, strict=True):
            z = sum(c * v for c, v in zip(b, row, strict=True))
            # log(1 + e^z) - y·z, stable for large |z|
            total += (z if z > 0 else 0.0) + math.log1p(math.exp(-abs(z))) - target * z
        return total

    current = objective(beta)
    for _ in range(max_iter):
        grad = [0.0] * (d + 1)
        hess = [[0.0] * (d + 1) for _ in range(d + 1)]
        for row, target in zip(rows, y, strict=True):
            p = _sigmoid(sum(c * v for c, v in zip(beta, row, strict=True)))
            r = p - target
            w = p * (1.0 - p)
            nonzero = [(j, v) for j, v in enumerate(row) if v != 0.0]
            for j, v in nonzero:
                grad[j] += r * v
                hj = hess[j]
                for k, u in nonzero:
                    hj[k] += w * v * u
        for j in range(1, d + 1):
            grad[j] += penalty[j] * beta[j]
            hess[j][j] += penalty[j]
        step = _solve(hess, grad)
        scale = 1.0
        while True:
            trial = [b - scale * s for b, s in zip(beta, step, strict=True)]
            value = objective(trial)
            if value <= current or scale < 1e-8:
                break
            scale /= 2.0
        beta, current = trial, value
        if max(abs(scale * s) for s in step) < tol:
            break
    return beta[0], beta[1:]


def _solve(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """``a⁻¹ b`` by Gaussian elimination with partial pivoting (``a`` is symmetric positive definite here)."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-300:
            continue  # a direction nothing constrains (cannot happen with l2 > 0): no step along it
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            if factor:
                for k in range(col, n + 1):
                    m[r][k] -= factor * m[col][k]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        if abs(m[r][r]) < 1e-300:
            continue
        out[r] = (m[r][n] - sum(m[r][k] * out[k] for k in range(r + 1, n))) / m[r][r]
    return out


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# --- figures ----------------------------------------------------------------------------------------------


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The chance that a failed run scores above a successful one (ties count half); ``None`` without both.

    >>> auroc([0.9, 0.4, 0.4, 0.1], [True, True, False, False])
    0.875
    """
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    # By ranks: O(n log n), ties given their mean rank.
    ordered = sorted(zip(scores, labels, strict=True), key=lambda t: t[0])
    rank_sum = 0.0
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][0] == ordered[i][0]:
            j += 1
        mean_rank = (i + j) / 2.0 + 1.0
        rank_sum += mean_rank * sum(1 for k in range(i, j + 1) if ordered[k][1])
        i = j + 1
    return (rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))


@dataclass(frozen=True)
class ReliabilityBin:
    """Runs whose score fell in ``[lower, upper)`` (the last bin includes 1): their mean score against the
    share that failed."""

    lower: float
    upper: float
    runs: int
    mean_score: float | None
    failure_rate: float | None


def reliability_table(scores: Sequence[float], labels: Sequence[bool], bins: int = BINS) -> list[ReliabilityBin]:
    """The reliability diagram as a table: ``bins`` equal-width bins over [0, 1].

    >>> [(b.runs, round(b.mean_score or 0, 4), b.failure_rate)
    ...  for b in reliability_table([0.1, 0.2, 0.8], [False, True, True], 2)]
    [(2, 0.15, 0.5), (1, 0.8, 1.0)]
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for s, y in zip(scores, labels, strict=True):
        members[min(max(int(s * bins), 0), bins - 1)].append((s, y))
    out = []
    for b, inside in enumerate(members):
        out.append(
            ReliabilityBin(
                lower=b / bins,
                upper=(b + 1) / bins,
                runs=len(inside),
                mean_score=sum(s for s, _ in inside) / len(inside) if inside else None,
                failure_rate=sum(1 for _, y in inside if y) / len(inside) if inside else None,
            )
        )
    return out


def expected_calibration_error(scores: Sequence[float], labels: Sequence[bool], bins: int = BINS) -> float:
    """``Σ_b (n_b / n) · |mean score_b - failure rate_b|`` over :func:`reliability_table`'s bins.

    >>> round(expected_calibration_error([0.1, 0.2, 0.8], [False, True, True], 2), 4)
    0.3
    """
    n = len(labels)
    if n == 0:
        raise ValueError("no scores")
    total = 0.0
    for b in reliability_table(scores, labels, bins):
        if b.runs and b.mean_score is not None and b.failure_rate is not None:
            total += b.runs / n * abs(b.mean_score - b.failure_rate)
    return total


_EXAMPLE: dict[str, Any] = {
    "version": FORMAT_VERSION,
    "base_rate": 0.5,
    "min_support": MIN_SUPPORT,
    "prior_strength": PRIOR_STRENGTH,
    "precision": [
        {
            "evaluator": "schema",
            "mode": "wrong_arguments",
            "outcome": "terminal",
            "runs": 8,
            "failed": 7,
            "ratio": 4.0,
            "precision": 0.8,
        }
    ],
    "combiner": {"kind": "logistic", "intercept": 0.0, "features": []},
}
