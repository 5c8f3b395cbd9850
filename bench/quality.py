"""How well the evaluator tells failed runs from successful ones, on every run file of the development data.

Run from the repository root::

    .venv/bin/python bench/quality.py                          # both modes, evaluated in this process
    .venv/bin/python bench/quality.py --via-cli                # the same through `otel-agent-eval evaluate`
    .venv/bin/python bench/quality.py --mode free --json out/quality.json

Every run file under ``--data`` is evaluated: ``tau-bench/*.json`` lists of runs (not the ``*-tools.json``
tool definitions) and ``tau2/*.json`` results. Each file gets the tool definitions of its domain
(``tau-bench/<airline|retail>-tools.json``, the domain taken from the file name; τ² files carry none).

Two modes, side by side:

* ``free``: reference-free, ``Engine()`` (the built-in detectors and any installed plugins). What a deployed
  agent's spans hold and nothing else: the runs are evaluated with their benchmark answers removed;
* ``reference``: reference-based, ``Engine([ReferenceEvaluator()])``, against the expected actions and outputs.

Ground truth is the benchmark's reward: ``reward == 0`` means the run failed. It is read only to score.
A run counts as flagged when its outcome is ``terminal``; recall is on failed runs, specificity on
successful ones, balanced accuracy their mean; AUROC ranks runs by ``failure_score`` (ties count half).
In reference mode the agreement with the reward is the accuracy.

The per-detector table (reference-free mode, all files pooled) counts, for each evaluator and failure mode,
the failed and the successful runs with at least one *decisive* terminal finding from it (confidence at least
``DECISIVE_CONFIDENCE``: the findings that make an outcome terminal), and the runs where it was the only
decisive source (dropping it would turn that run's outcome). It is for tuning: a row with many successful
runs is where the false alarms come from.

``--via-cli`` runs ``otel-agent-eval evaluate FILE --tools TOOLS -o results.jsonl [--reference]`` for each file
and mode, scores the JSON Lines (results matched back to runs by ``source.index``), and checks that every
run's outcome, failure score and findings equal those of the in-process evaluation (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import otel_agent_eval
from otel_agent_eval.errors import InputError
from otel_agent_eval.evaluate import Engine, PackLibrary
from otel_agent_eval.evaluate.calibration import (
    auroc,
    default_calibration,
    failure_rate,
    leave_one_source_out,
    reliability_table,
)
from otel_agent_eval.evaluate.findings import DECISIVE_CONFIDENCE, Evaluation
from otel_agent_eval.evaluate.reference import ReferenceEvaluator, first_divergence
from otel_agent_eval.ingest.recorded import detect_format, load_runs, load_tools, read_json_or_jsonl
from otel_agent_eval.metamorphic import invariance
from otel_agent_eval.model import AgentRun, ToolDefinition

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"

# Targets of the evaluator issue, on this data.
# (metric, goal, judged on every file or only pooled), per setting (issue 9, item 7).
TARGETS_FREE = (("specificity", 0.97, "every"), ("balanced_accuracy", 0.72, "pooled"), ("auroc", 0.80, "pooled"))
TARGETS_REFERENCE = (("agreement", 0.97, "pooled"),)
_DOMAIN = re.compile(r"(airline|retail)", re.IGNORECASE)


# --- data --------------------------------------------------------------------------------------------------


@dataclass
class DataFile:
    path: Path
    label: str
    """The path under the data directory."""
    tools_path: Path
    tools: tuple[ToolDefinition, ...]
    runs: list[AgentRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Runs that could not be read (their messages)."""

    def failed(self) -> dict[int, bool | None]:
        """Ground truth by the run's 0-based position in its file: reward == 0 means failed (None: no reward)."""
        out: dict[int, bool | None] = {}
        for run in self.runs:
            assert run.source is not None
            reward = run.reference.reward if run.reference else None
            out[run.source.index] = None if reward is None else reward == 0
        return out


def discover(data: Path) -> list[DataFile]:
    """The run files under ``data``: τ-bench run lists and τ² results, each with its domain's tool definitions."""
    candidates = [p for p in sorted((data / "tau-bench").glob("*.json")) if not p.name.endswith("-tools.json")]
    candidates += sorted((data / "tau2").glob("*.json"))
    files = []
    for path in candidates:
        label = path.relative_to(data).as_posix()
        try:
            fmt = detect_format(read_json_or_jsonl(path), file=str(path))
        except InputError as exc:
            print(f"note: {label} skipped: {exc}", file=sys.stderr)
            continue
        if fmt not in ("tau-bench", "tau2"):
            print(f"note: {label} skipped: {fmt} file, not a run list", file=sys.stderr)
            continue
        domain = _DOMAIN.search(path.name)
        tools_path = data / "tau-bench" / f"{domain.group(1).lower() if domain else '?'}-tools.json"
        if domain is None or not tools_path.exists():
            print(f"note: {label} skipped: no airline/retail tool definitions for it", file=sys.stderr)
            continue
        df = DataFile(path=path, label=label, tools_path=tools_path, tools=load_tools(tools_path))
        for item in load_runs(path, tools=df.tools):
            if isinstance(item, InputError):
                df.skipped.append(str(item))
            else:
                df.runs.append(item)
        files.append(df)
    if not files:
        raise SystemExit(f"no run files found under {data}")
    return files


# --- evaluation, in process or through the CLI --------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One finding, as scored: who said what, where, how sure."""

    evaluator: str
    mode: str
    step: int
    outcome: str
    confidence: float
    counts: bool
    """A failure of the agent (not an ``evaluator_error``)."""
    decides: bool = False
    """It decides the outcome (confident, and structural or corroborated: ``findings.decides``)."""
    evidence_kind: str = "structural"


@dataclass
class Result:
    index: int
    id: str | None
    failed: bool | None
    outcome: str
    score: float
    hits: tuple[Hit, ...]
    root_cause: int | None = None
    divergence: int | None = None
    """The step where the run first departs from its reference (``reference.first_divergence``)."""

    @property
    def terminal(self) -> bool:
        return self.outcome == "terminal"

    def decisive(self) -> set[tuple[str, str]]:
        """(evaluator, mode) of the findings that make the outcome terminal."""
        return {(h.evaluator, h.mode) for h in self.hits if h.counts and h.outcome == "terminal" and h.decides}

    def key(self) -> tuple[Any, ...]:
        """What must be equal between two evaluations of the same run."""
        return (
            self.outcome,
            self.score,
            sorted(
                (h.evaluator, h.mode, h.step, h.outcome, h.confidence, h.decides, h.evidence_kind) for h in self.hits
            ),
        )


SETTINGS = ("free", "generic", "reference")
"""Reference-free with the packs chosen per run (``auto``), reference-free with the generic pack forced
(as for a domain no pack knows), and reference-based."""
SETTING_MODE = {"free": "free", "generic": "free", "reference": "reference"}
SETTING_PACK = {"free": "auto", "generic": "generic", "reference": "auto"}
SETTING_TITLE = {
    "free": "reference-free, --pack auto (Engine())",
    "generic": "reference-free, --pack generic (a domain no pack knows)",
    "reference": "reference-based (Engine([ReferenceEvaluator()]))",
}


def engine_for(setting: str) -> Engine:
    packs = PackLibrary.with_builtins(force=SETTING_PACK[setting])
    return Engine(packs=packs) if SETTING_MODE[setting] == "free" else Engine([ReferenceEvaluator()], packs=packs)


def in_process(df: DataFile, mode: str, engine: Engine) -> list[Result]:
    truth = df.failed()
    out = []
    for run in df.runs:
        assert run.source is not None
        # Reference-free evaluation gets the run without its answers: the figures cannot depend on them.
        evaluation: Evaluation = engine.evaluate(replace(run, reference=None) if mode == "free" else run)
        hits = tuple(
            Hit(f.evaluator, f.mode, f.step, f.outcome, round(f.confidence, 4), f.counts, d, f.evidence_kind)
            for f, d in zip(evaluation.findings, evaluation.deciding, strict=True)
        )
        out.append(
            Result(
                run.source.index,
                run.source.id,
                truth[run.source.index],
                evaluation.outcome,
                evaluation.failure_score,
                hits,
                evaluation.root_cause_step,
                first_divergence(run),
            )
        )
    return out


def cli_command() -> list[str]:
    beside = Path(sys.executable).parent / "otel-agent-eval"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("otel-agent-eval")
    return [found] if found else [sys.executable, "-m", "otel_agent_eval.cli"]


def via_cli(df: DataFile, setting: str, command: Sequence[str]) -> list[Result]:
    truth = df.failed()
    divergences = {run.source.index: first_divergence(run) for run in df.runs if run.source is not None}
    mode = SETTING_MODE[setting]
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        output = Path(tmp) / "results.jsonl"
        cmd = [*command, "evaluate", str(df.path), "--tools", str(df.tools_path), "-o", str(output)]
        cmd += ["--pack", SETTING_PACK[setting]]
        if mode == "reference":
            cmd.append("--reference")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr}")
        lines = output.read_text(encoding="utf-8").splitlines()
    out = []
    seen: set[int] = set()
    for line in lines:
        obj = json.loads(line)
        index = obj["source"]["index"]
        if index not in truth:
            raise SystemExit(f"{df.label}: the CLI returned a result for run {index}, which the file does not hold")
        if index in seen:
            raise SystemExit(f"{df.label}: the CLI returned two results for run {index}")
        seen.add(index)
        hits = tuple(
            Hit(
                f["evaluator"],
                f["mode"],
                int(f["step"]),
                f["outcome"],
                round(float(f["confidence"]), 4),
                f.get("category") != "evaluator",
                decides,
                f.get("evidence_kind", "structural"),
            )
            # Deciding findings are "failures", the others "suspicions" (each list absent when not written).
            for decides, group in ((True, obj.get("failures", ())), (False, obj.get("suspicions", ())))
            for f in group
        )
        out.append(
            Result(
                index,
                obj["source"].get("id"),
                truth[index],
                obj["outcome"],
                float(obj["failure_score"]),
                hits,
                obj.get("root_cause_step"),
                divergences.get(index),
            )
        )
    missing = sorted(set(truth) - seen)
    if missing:
        raise SystemExit(f"{df.label}: the CLI returned no result for runs {missing[:10]}")
    return sorted(out, key=lambda r: r.index)


# --- scores --------------------------------------------------------------------------------------------------


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def metrics(results: Sequence[Result]) -> dict[str, Any]:
    scored = [r for r in results if r.failed is not None]
    pos = [r for r in scored if r.failed]
    neg = [r for r in scored if not r.failed]
    tp = sum(r.terminal for r in pos)
    tn = sum(not r.terminal for r in neg)
    flagged = sum(r.terminal for r in scored)
    recall = _ratio(tp, len(pos))
    specificity = _ratio(tn, len(neg))
    accuracy = _ratio(tp + tn, len(scored))
    return {
        "runs": len(results),
        "scored": len(scored),
        "failed": len(pos),
        "flagged": flagged,
        "outcomes": dict(Counter(r.outcome for r in results)),
        "accuracy": accuracy,
        "balanced_accuracy": (recall + specificity) / 2 if recall is not None and specificity is not None else None,
        "recall": recall,
        "specificity": specificity,
        "precision": _ratio(tp, flagged),
        "auroc": auroc([r.score for r in scored], [bool(r.failed) for r in scored]),
        "agreement": accuracy,
    }


def detector_table(results: Iterable[Result]) -> list[dict[str, Any]]:
    """Per (evaluator, mode): failed / successful runs with a decisive terminal finding from it, and more."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {
            "failed": 0,
            "successful": 0,
            "sole_failed": 0,
            "sole_successful": 0,
            "any_failed": 0,
            "any_successful": 0,
        }
    )
    for r in results:
        if r.failed is None:
            continue
        side = "failed" if r.failed else "successful"
        decisive = r.decisive()
        for key in decisive:
            rows[key][side] += 1
            if len({e for e, _ in decisive}) == 1:
                rows[key][f"sole_{side}"] += 1
        for key in {(h.evaluator, h.mode) for h in r.hits if h.counts}:
            rows[key][f"any_{side}"] += 1
    out = []
    for (evaluator, mode), row in rows.items():
        flagged = row["failed"] + row["successful"]
        out.append({"evaluator": evaluator, "mode": mode, **row, "precision": _ratio(row["failed"], flagged)})
    out.sort(key=lambda r: (-(r["failed"] + r["successful"]), -r["any_failed"], r["evaluator"], r["mode"]))
    return out


# --- printing ----------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def mode_table(mode: str, per_file: dict[str, dict[str, Any]], pooled: dict[str, Any]) -> str:
    header = ["file", "runs", "failed", "terminal", "accuracy", "balanced acc.", "recall", "specificity", "precision"]
    header += ["AUROC"] + (["agreement"] if mode == "reference" else [])
    rows = []
    for label, m in [*per_file.items(), ("**pooled**", pooled)]:
        row = [label, str(m["runs"]), str(m["failed"]), str(m["flagged"])]
        row += [fmt(m[k]) for k in ("accuracy", "balanced_accuracy", "recall", "specificity", "precision", "auroc")]
        if mode == "reference":
            row.append(fmt(m["agreement"]))
        rows.append(row)
    return table(header, rows, "l" + "r" * (len(header) - 1))


def targets_table(modes: Sequence[str], numbers: dict[str, Any]) -> tuple[str, bool]:
    """One row per file and pooled, one column per (setting, metric); a target judged only pooled shows
    its per-file figures unmarked."""
    targets = [
        (mode, key, goal, scope)
        for mode in modes
        for key, goal, scope in (TARGETS_FREE if SETTING_MODE[mode] == "free" else TARGETS_REFERENCE)
    ]
    names = {
        "balanced_accuracy": "balanced acc.",
        "auroc": "AUROC",
        "specificity": "specificity",
        "agreement": "agreement",
    }
    header = ["file"] + [
        f"{mode} {names[k]} ≥ {g:.2f}{' (pooled)' if sc == 'pooled' else ''}" for mode, k, g, sc in targets
    ]
    rows = []
    all_met = True
    labels = list(numbers[modes[0]]["files"])
    for label in [*labels, "**pooled**"]:
        row = [label]
        for mode, key, goal, scope in targets:
            m = numbers[mode]["pooled"] if label == "**pooled**" else numbers[mode]["files"][label]
            value = m[key]
            if scope == "pooled" and label != "**pooled**":
                row.append(fmt(value))
                continue
            met = value is not None and value >= goal
            all_met &= met
            row.append(f"{fmt(value)} {'✓ met' if met else '✗ not met'}")
        rows.append(row)
    return table(header, rows, "l" + "r" * len(targets)), all_met


def print_detectors(rows: list[dict[str, Any]], pooled: dict[str, Any]) -> None:
    base = _ratio(pooled["failed"], pooled["scored"])
    print(
        f"\nPer detector, reference-free, all files pooled ({pooled['failed']} failed and "
        f"{pooled['scored'] - pooled['failed']} successful runs; base rate of failure {fmt(base)}). "
        f"*Decisive*: a terminal finding that decides (confidence ≥ {DECISIVE_CONFIDENCE}, and structural or "
        "corroborated), which alone makes the outcome terminal. *Sole*: runs where this evaluator was the only "
        "decisive one (dropping it changes the outcome). "
        "*Any*: runs with any finding of it (terminal or recovered, any confidence).\n"
    )
    header = ["evaluator", "mode", "decisive: failed", "decisive: successful", "precision", "sole: failed"]
    header += ["sole: successful", "any: failed", "any: successful"]
    body = [
        [
            r["evaluator"],
            r["mode"],
            str(r["failed"]),
            str(r["successful"]),
            fmt(r["precision"], 2),
            str(r["sole_failed"]),
            str(r["sole_successful"]),
            str(r["any_failed"]),
            str(r["any_successful"]),
        ]
        for r in rows
    ]
    print(table(header, body, "ll" + "r" * 7))


def root_cause_figures(results: Sequence[Result]) -> dict[str, Any]:
    """On failed runs with a reference divergence: how often root_cause_step is exactly it, or within 2."""
    failed = [r for r in results if r.failed and r.divergence is not None]
    named = [r for r in failed if r.root_cause is not None]
    exact = sum(r.root_cause == r.divergence for r in named)
    near = sum(abs(r.root_cause - r.divergence) <= 2 for r in named if r.root_cause is not None)
    return {
        "failed_with_divergence": len(failed),
        "with_root_cause": len(named),
        "exact": exact,
        "within_2": near,
        "exact_share": _ratio(exact, len(failed)),
        "within_2_share": _ratio(near, len(failed)),
        "exact_share_of_named": _ratio(exact, len(named)),
        "within_2_share_of_named": _ratio(near, len(named)),
    }


def print_root_cause(setting: str, by_file: dict[str, list[Result]]) -> dict[str, Any]:
    print(
        f"\n## Root cause ({SETTING_TITLE[setting]})\n\nOn failed runs, `root_cause_step` against the step where "
        "the run first departs from its reference (`reference.first_divergence`: the first successful write "
        "no expected write accounts for, or the last assistant step when an expected action is missing). "
        "Shares of the failed runs with a divergence (a run with no root cause is a miss), and, in brackets, "
        "of those the evaluator named a root cause for.\n"
    )
    rows = []
    out: dict[str, Any] = {}
    pooled: list[Result] = []
    for label, results in [*by_file.items(), ("**pooled**", [])]:
        figures = root_cause_figures(pooled if label == "**pooled**" else results)
        pooled += results
        out[label] = figures
        rows.append(
            [
                label,
                str(figures["failed_with_divergence"]),
                str(figures["with_root_cause"]),
                f"{fmt(figures['exact_share'])} ({fmt(figures['exact_share_of_named'])})",
                f"{fmt(figures['within_2_share'])} ({fmt(figures['within_2_share_of_named'])})",
            ]
        )
    print(table(["file", "failed, diverging", "with a root cause", "exact", "within 2 steps"], rows, "lrrrr"))
    return out


def print_calibration(files: Sequence[DataFile]) -> dict[str, Any]:
    """The shipped calibration's procedure, leave-one-source-out: each file scored by a calibration fitted on
    the others, and the reliability of those out-of-fold scores."""
    engine = Engine(calibration=None)
    items = []
    labels: list[bool] = []
    groups: list[str] = []
    for df in files:
        truth = df.failed()
        for run in df.runs:
            assert run.source is not None
            if truth[run.source.index] is None:
                continue
            blind = replace(run, reference=None)
            items.append((blind, engine.findings(blind)))
            labels.append(bool(truth[run.source.index]))
            groups.append(df.label)
    shipped = default_calibration()
    cv = leave_one_source_out(
        items,
        labels,
        groups,
        feature_groups=tuple(shipped.fitted.get("features", ("evidence",))),
        confidences=shipped.confidences,
    )
    print(
        "\n## Calibration (leave-one-source-out)\n\nThe shipped calibration's procedure "
        f"(`scripts/calibrate-builtin.sh`: confidences {shipped.confidences}, features "
        f"{', '.join(shipped.fitted.get('features', ('evidence',)))}), each file scored by a fit on the other two, "
        f"every fold stated at the failure rate {fmt(failure_rate(labels, groups))} (the mean of the files' rates). "
        "ECE: expected calibration error over 10 equal-width bins.\n"
    )
    rows = [
        [f.name, str(f.runs), str(f.failed), fmt(f.auroc), fmt(f.ece), fmt(f.noisy_or_auroc)]
        for f in (*cv.validation.sources, cv.validation.pooled)
    ]
    print(table(["held-out file", "runs", "failed", "AUROC", "ECE", "uncalibrated AUROC"], rows, "lrrrrr"))
    bins = reliability_table(list(cv.scores), list(cv.labels))
    print("\nReliability of the out-of-fold scores (pooled):\n")
    print(
        table(
            ["score bin", "runs", "mean score", "share failed"],
            [
                [f"{b.lower:.1f}–{b.upper:.1f}", str(b.runs), fmt(b.mean_score), fmt(b.failure_rate)]
                for b in bins
                if b.runs
            ],
            "lrrr",
        )
    )
    return {
        "validation": cv.validation.to_dict(),
        "reliability": [
            {"lower": b.lower, "upper": b.upper, "runs": b.runs, "mean_score": b.mean_score, "failed": b.failure_rate}
            for b in bins
        ],
    }


def print_invariance(files: Sequence[DataFile]) -> dict[str, Any]:
    """The metamorphic rows: every run rewritten consistently (otel_agent_eval.metamorphic), evaluated with
    --pack generic before and after."""
    engine = engine_for("generic")
    runs = [run for df in files for run in df.runs]
    report = invariance(engine, runs)
    targets = {"same_outcome": 0.98, "same_failures": 0.98, "spearman": 0.95}
    print(
        "\n## Metamorphic invariance (--pack generic)\n\nEvery run rewritten consistently: tool and argument "
        "names, result keys, identifier formats, amounts (×3) and currency (€), person names, in the calls, "
        "results, definitions and policy (`otel_agent_eval.metamorphic.rewrite`); evaluated before and after.\n"
    )
    rows = [
        [
            name.replace("_", " "),
            fmt(getattr(report, name)),
            f"≥ {goal:.2f}",
            "✓ met" if getattr(report, name) >= goal else "✗ not met",
        ]
        for name, goal in targets.items()
    ]
    print(table(["measure", "value", "target", "status"], rows, "lrrl"))
    for change in report.changed[:10]:
        print(f"- {change.describe()}")
    return {
        "runs": report.runs,
        "same_outcome": report.same_outcome,
        "same_failures": report.same_failures,
        "spearman": report.spearman,
        "changed": [c.describe() for c in report.changed],
        "met": report.meets(targets),
    }


def _disagreement(label: str, r: Result) -> str:
    found = "; ".join(f"{h.mode} at step {h.step} ({h.outcome}, {h.confidence:g})" for h in r.hits) or "no findings"
    reward = "0 (failed)" if r.failed else "1 (succeeded)"
    return f"{label} run {r.index} (id {r.id}): reward {reward}, outcome {r.outcome}: {found}"


# --- main --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the data directory (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")
    parser.add_argument(
        "--mode",
        choices=(*SETTINGS, "all"),
        default="all",
        help="free: reference-free, packs chosen per run; generic: reference-free, the generic pack forced; "
        "reference: reference-based; all (default): the three",
    )
    parser.add_argument(
        "--via-cli",
        action="store_true",
        help="evaluate through `otel-agent-eval evaluate` (a subprocess per file and mode), and check that it "
        "agrees run by run with the in-process evaluation",
    )
    args = parser.parse_args(argv)
    modes = SETTINGS if args.mode == "all" else (args.mode,)

    files = discover(args.data.resolve())
    command = cli_command() if args.via_cli else []
    print(f"# Quality benchmark: otel-agent-eval {otel_agent_eval.__version__}")
    given = list(argv if argv is not None else sys.argv[1:])
    print(f"\ncommand: {' '.join(['.venv/bin/python', 'bench/quality.py', *given])}")
    print(
        f"data: {args.data}; evaluated {'through ' + ' '.join(command) + ' evaluate' if args.via_cli else 'in process'}"
    )
    for df in files:
        skipped = f", {len(df.skipped)} unreadable (skipped)" if df.skipped else ""
        print(f"- {df.label}: {len(df.runs)} runs{skipped}, tools {df.tools_path.name} ({len(df.tools)} tools)")
        for message in df.skipped:
            print(f"  skipped: {message}")

    numbers: dict[str, Any] = {
        "version": otel_agent_eval.__version__,
        "data": str(args.data),
        "via_cli": args.via_cli,
        "decisive_confidence": DECISIVE_CONFIDENCE,
    }
    mismatches: list[str] = []
    free_results: list[Result] = []
    by_setting: dict[str, dict[str, list[Result]]] = {}
    disagreements: list[str] = []
    for mode in modes:
        engine = engine_for(mode)
        per_file: dict[str, dict[str, Any]] = {}
        pooled_results: list[Result] = []
        started = time.perf_counter()
        cpu = time.process_time()
        per_file_detectors = {}
        by_file: dict[str, list[Result]] = {}
        for df in files:
            results = via_cli(df, mode, command) if args.via_cli else in_process(df, SETTING_MODE[mode], engine)
            if args.via_cli:
                mine = {r.index: r for r in in_process(df, SETTING_MODE[mode], engine)}
                for r in results:
                    if r.key() != mine[r.index].key():
                        mismatches.append(
                            f"{mode}: {df.label}: run {r.index}: CLI {r.key()} != in-process {mine[r.index].key()}"
                        )
            per_file[df.label] = metrics(results)
            if SETTING_MODE[mode] == "free":
                per_file_detectors[df.label] = detector_table(results)
            pooled_results += results
            by_file[df.label] = results
        by_setting[mode] = by_file
        wall = time.perf_counter() - started
        pooled = metrics(pooled_results)
        numbers[mode] = {"files": per_file, "pooled": pooled, "seconds": round(wall, 2)}
        evaluators = ", ".join(e.name for e in engine.evaluators)
        print(f"\n## {SETTING_TITLE[mode]}\n")
        print(f"evaluators: {evaluators}")
        how = (
            "wall, with the CLI subprocesses and the in-process check"
            if args.via_cli
            else f"wall, {time.process_time() - cpu:.1f} s CPU"
        )
        print(f"{pooled['runs']} runs in {wall:.1f} s {how}\n")
        print(mode_table(SETTING_MODE[mode], per_file, pooled))
        errors = sum(1 for r in pooled_results for h in r.hits if not h.counts)
        if errors:
            print(f"\n{errors} evaluator_error finding(s): a detector raised (see the results for which)")
        if mode == "reference":
            for label, results in by_file.items():
                for r in results:
                    if r.failed is not None and r.terminal != r.failed:
                        disagreements.append(_disagreement(label, r))
        if mode == "free":
            free_results = pooled_results
        if SETTING_MODE[mode] == "free":
            numbers[mode]["detectors"] = detector_table(pooled_results)
            numbers[mode]["detectors_by_file"] = per_file_detectors

    print("\n## Targets (issue 9)\n")
    print(
        "reference-free, with either pack setting: specificity ≥ 0.97 on every file, balanced accuracy ≥ 0.72 "
        "and AUROC ≥ 0.80 pooled; reference-based: agreement ≥ 0.97.\n"
    )
    tab, all_met = targets_table(modes, numbers)
    print(tab)
    print(f"\nall targets met: {'yes' if all_met else 'no'}")
    numbers["all_targets_met"] = all_met

    if free_results:
        print_detectors(numbers["free"]["detectors"], numbers["free"]["pooled"])

    for setting in ("free", "generic"):
        if setting in modes:
            numbers[setting]["root_cause"] = print_root_cause(setting, by_setting[setting])
    if "free" in modes and not args.via_cli:
        numbers["calibration"] = print_calibration(files)

    if "generic" in modes and not args.via_cli:
        numbers["invariance"] = print_invariance(files)
        all_met &= numbers["invariance"]["met"]
        numbers["all_targets_met"] = all_met

    if disagreements:
        print(f"\nReference-based evaluation disagrees with the reward on {len(disagreements)} runs:\n")
        for line in disagreements:
            print(f"- {line}")
    numbers["reference_disagreements"] = disagreements

    if args.via_cli:
        total = sum(numbers[m]["pooled"]["runs"] for m in modes)
        print("\n## CLI against in-process evaluation\n")
        if mismatches:
            print(f"DIFFERENT on {len(mismatches)} of {total} run evaluations:")
            for line in mismatches[:20]:
                print(f"- {line}")
        else:
            print(f"identical on {total} of {total} run evaluations (outcome, failure score, every finding)")
        numbers["cli_mismatches"] = mismatches

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nnumbers written to {args.json}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
