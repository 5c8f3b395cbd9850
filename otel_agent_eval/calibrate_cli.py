"""``otel-agent-eval calibrate``: fit a calibration (measured precisions and a failure-score combiner) on runs
whose outcome is known, and the ``--calibration`` option of ``evaluate`` and ``serve``.

Where the outcomes come from, for each run (the first that applies):

1. ``--outcomes FILE.jsonl``: lines ``{"trace_id": "...", "success": true}``, joined with the runs by trace
   id (every run of that trace: a sub-agent's run shares its trace id);
2. the application's own outcome on the run (``run.set_outcome(success=...)``: ``agent_eval.run.success`` on
   the root span), in OTLP JSON traces or in a processor store (``--data-dir``);
3. a benchmark's reward in recorded runs (τ-bench, τ²): ``reward == 0`` is a failed run.

Runs with none are left out (counted on stderr). The runs themselves are evaluated reference-free, their
outcome and reward removed first: the label never reaches a detector or a feature. Each input file (and the
store) is one *source*; with two or more, the leave-one-source-out figures are printed and kept in the file.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from .cli_options import pack_options, strict_option
from .errors import InputError
from .evaluate.calibration import (
    DEFAULT_FEATURE_GROUPS,
    FEATURE_GROUPS,
    Calibration,
    Figures,
    fit,
)
from .evaluate.calibration import load_calibration as _load
from .ingest.jsonfile import loads, read_text
from .ingest.recorded import FORMATS, Format
from .model import AgentRun
from .output import BadInput, write_atomically


def load_calibration(value: str | Path | None) -> Calibration | None:
    """``--calibration``: a file, or ``builtin`` for the one shipped with the package; errors exit 2."""
    if value is None:
        return None
    try:
        return _load(value)
    except InputError as exc:
        raise BadInput(str(exc)) from None


calibration_option = click.option(
    "--calibration",
    "calibration_file",
    type=click.Path(dir_okay=False),
    default="builtin",
    show_default=True,
    help="A calibration file (`otel-agent-eval calibrate`): failure_score is its fitted probability, and "
    "(fitted with --confidences measured) its measured precisions replace the detectors' confidences. "
    "'builtin': the one shipped, fitted on the development data; 'none': the detectors' own, noisy-or.",
)


@dataclass
class Labelled:
    run: AgentRun
    failed: bool
    source: str


def read_outcomes(path: str) -> dict[str, bool]:
    """``{"trace_id": ..., "success": bool}`` per line -> trace id (lower case) -> success."""
    try:
        lines = read_text(path).splitlines()
    except InputError as exc:  # it cannot be read, or is not UTF-8
        raise BadInput(str(exc)) from None
    out: dict[str, bool] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = loads(line)  # never a RecursionError: nesting is bounded (jsonfile.MAX_DEPTH)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}: line {number}: not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise BadInput(f"{path}: line {number}: expected an object with trace_id and success")
        trace_id, success = obj.get("trace_id"), obj.get("success")
        if not isinstance(trace_id, str) or not trace_id:
            raise BadInput(f"{path}: line {number}: trace_id: expected a string")
        if not isinstance(success, bool):
            raise BadInput(f"{path}: line {number}: success: expected true or false")
        out[trace_id.lower()] = success
    if not out:
        raise BadInput(f"{path}: no outcomes in it")
    return out


def label_of(run: AgentRun, outcomes: dict[str, bool]) -> bool | None:
    """Whether the run failed, from the first source of outcomes that knows (see the module); None: unknown."""
    if run.trace_id and run.trace_id.lower() in outcomes:
        return not outcomes[run.trace_id.lower()]
    if run.outcome is not None:
        return not run.outcome.success
    if run.reference is not None and run.reference.reward is not None:
        return run.reference.reward == 0
    return None


def _store_runs(data_dir: Path) -> Iterator[AgentRun]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from .ingest.spans import runs_from_request
    from .processor.store import Store

    path = data_dir / "agent-eval.sqlite"
    if not path.exists():
        raise BadInput(f"{path}: no trace store here (start `otel-agent-eval serve --data-dir {data_dir}`)")
    store = Store(path)
    try:
        rows = store.recent_traces(limit=2**62)
    finally:
        store.close()
    for row in reversed(rows):  # oldest first
        try:
            request = ExportTraceServiceRequest.FromString(row.spans)
        except Exception as exc:  # a damaged row: the rest of the store still counts
            click.echo(f"skipped: {path}: trace {row.trace_id}: unreadable spans ({exc})", err=True)
            continue
        yield from runs_from_request(request)


def _command(params: dict[str, Any]) -> str:
    """The command line that makes this file again (options in a fixed order)."""
    parts = ["otel-agent-eval", "calibrate", *params["inputs"]]
    for tools in params["tools_files"]:
        parts += ["--tools", tools]
    for key, flag in (("fmt", "--format"), ("data_dir", "--data-dir"), ("outcomes_file", "--outcomes")):
        if params.get(key) is not None:
            parts += [flag, str(params[key])]
    for pack in params["packs"]:
        parts += ["--policy-pack", pack]
    if params["pack"] != "auto":
        parts += ["--pack", params["pack"]]
    if params["features"] != ",".join(DEFAULT_FEATURE_GROUPS):
        parts += ["--features", params["features"]]
    if params["confidences"] != "measured":
        parts += ["--confidences", params["confidences"]]
    parts += ["--output", params["output"]]
    return shlex.join(parts)


def _figures_table(rows: Sequence[Figures]) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        f"{'held-out source':40} {'runs':>5} {'failed':>6} {'AUROC':>6} {'ECE':>6} {'Brier':>6} {'noisy-or AUROC':>14}"
    ]
    for f in rows:
        lines.append(
            f"{_short(f.name):40} {f.runs:>5} {f.failed:>6} {num(f.auroc):>6} {num(f.ece):>6} {num(f.brier):>6} "
            f"{num(f.noisy_or_auroc):>14}"
        )
    return "\n".join(lines)


def _short(name: str) -> str:
    parts = name.replace("\\", "/").rstrip("/").split("/")
    short = "/".join(parts[-2:])
    return short if len(short) <= 40 else "…" + short[-39:]


@click.command("calibrate")
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, help="Where to write the calibration (JSON; '-': stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Input format; detected when omitted.")
@click.option(
    "--tools",
    "tools_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Tool definitions (a JSON list of OpenAI functions) for runs that carry none: once for every input, "
    "or once per input, in the order of the inputs.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also take the runs of a processor's embedded store (`serve --data-dir`), with the outcomes the "
    "application set on them (or --outcomes).",
)
@click.option(
    "--outcomes",
    "outcomes_file",
    type=click.Path(dir_okay=False),
    default=None,
    help='A JSON Lines file of {"trace_id": ..., "success": true|false}: each run\'s outcome, by trace id '
    "(over the outcome the run carries).",
)
@pack_options
@click.option(
    "--features",
    default=",".join(DEFAULT_FEATURE_GROUPS),
    show_default=True,
    help=f"The combiner's feature groups, comma-separated, from {', '.join(FEATURE_GROUPS)}.",
)
@click.option(
    "--confidences",
    type=click.Choice(["measured", "detector"]),
    default="measured",
    show_default=True,
    help="measured: findings take their measured precision as confidence (and so decide outcomes with it); "
    "detector: they keep the detectors' own, and only failure_score is calibrated.",
)
@strict_option
def calibrate(
    inputs: tuple[str, ...],
    output: str,
    fmt: Format | None,
    tools_files: tuple[str, ...],
    data_dir: Path | None,
    outcomes_file: str | None,
    packs: tuple[str, ...],
    pack: str,
    features: str,
    confidences: str,
    strict: bool,
) -> None:
    """Fit a calibration on runs whose outcome is known: each detector's precision (as its confidence) and
    a logistic combiner (as failure_score), for `evaluate --calibration` and `serve --calibration`.

    INPUTS are recorded runs (their reward is the outcome) or OTLP JSON traces (the outcome the application
    set with run.set_outcome); --data-dir adds a processor store's runs, --outcomes gives outcomes by trace
    id. With two sources or more (an input file each, the store one more), the leave-one-source-out figures
    are printed: fitted on all sources but one, measured on that one.
    """
    from .cli import RunLoader
    from .evaluate import Engine, PackLibrary

    params = dict(click.get_current_context().params)
    if not inputs and data_dir is None:
        raise BadInput("give run files, or --data-dir, or both")
    if tools_files and len(tools_files) not in (1, len(inputs)):
        raise BadInput(
            f"--tools given {len(tools_files)} times for {len(inputs)} inputs: give it once, or once per input"
        )
    groups = tuple(g.strip() for g in features.split(",") if g.strip())
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown or not groups:
        raise BadInput(f"--features {features!r}: choose from {', '.join(FEATURE_GROUPS)}")
    try:
        library = PackLibrary.with_builtins(packs, force=pack)
    except InputError as exc:
        raise BadInput(str(exc)) from None
    outcomes = read_outcomes(outcomes_file) if outcomes_file else {}

    labelled: list[Labelled] = []
    unknown_outcome = 0

    def take(run: AgentRun, source: str) -> None:
        nonlocal unknown_outcome
        failed = label_of(run, outcomes)
        if failed is None:
            unknown_outcome += 1
        else:
            labelled.append(Labelled(run, failed, source))

    for position, file in enumerate(inputs):
        tools = tools_files[0] if len(tools_files) == 1 else (tools_files[position] if tools_files else None)
        loader = RunLoader(fmt, tools, strict)
        for run in loader.runs([file]):
            take(run, file)
    if data_dir is not None:
        for run in _store_runs(data_dir):
            take(run, str(data_dir))
    if unknown_outcome:
        click.echo(f"left out {unknown_outcome} run(s) with no known outcome", err=True)
    failed = sum(1 for item in labelled if item.failed)
    if not failed or failed == len(labelled):
        raise BadInput(
            f"{len(labelled)} runs with a known outcome, {failed} of them failed: a calibration needs failed "
            "and successful runs"
        )

    engine = Engine(packs=library, calibration=None)  # the detectors' own findings: never a calibration's
    items = []
    for item in labelled:
        # Reference-free: what a deployed agent's spans hold, without the outcome that is the label.
        run = replace(item.run, reference=None, outcome=None)
        items.append((run, engine.findings(run)))
    sources = [item.source for item in labelled]
    calibration = fit(
        items,
        [item.failed for item in labelled],
        sources,
        feature_groups=groups,
        confidences=confidences,
        fitted={
            "command": _command(params),
            "evaluators": [e.name for e in engine.evaluators],
            "pack": pack,
        },
    )
    write_atomically(output, [calibration.dumps().rstrip("\n")])
    click.echo(
        f"calibrated on {len(labelled)} runs ({failed} failed) from {len(set(sources))} source(s) -> {output}",
        err=True,
    )
    kept = [p for p in calibration.precision if p.runs >= calibration.min_support]
    click.echo(
        f"{len(kept)} of {len(calibration.precision)} kinds of finding with >= {calibration.min_support} runs get "
        "their measured precision",
        err=True,
    )
    if calibration.validation is not None:
        v = calibration.validation
        click.echo("leave-one-source-out (fitted without the source, measured on it):", err=True)
        click.echo(_figures_table([*v.sources, v.pooled]), err=True)
    else:
        click.echo("one source: no leave-one-source-out figures (give runs from two sources or more)", err=True)
