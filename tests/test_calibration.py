"""Calibration: the logistic fit, the figures, the precision table, the file, leave-one-source-out, the
``calibrate`` command and ``--calibration`` on ``evaluate`` / ``serve``, and the shipped file being current."""

from __future__ import annotations

import json
import math
import random
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DATA, ROOT, TAU2, TAU2_FT, TAU_BENCH
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_agent_eval.cli import main
from otel_agent_eval.errors import InputError
from otel_agent_eval.evaluate import Engine
from otel_agent_eval.evaluate.calibration import (
    Calibration,
    Combiner,
    Feature,
    Precision,
    auroc,
    default_calibration,
    expected_calibration_error,
    features,
    fit,
    fit_logistic,
    leave_one_source_out,
    precision_table,
    reliability_table,
)
from otel_agent_eval.evaluate.findings import Evaluation, Finding
from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.instrument.recorded import RunSpanWriter
from otel_agent_eval.model import AgentRun, ApplicationOutcome, AssistantMessage, ToolExecution, UserMessage
from otel_agent_eval.otlp_json import request_to_json
from otel_agent_eval.processor import Processor, ServeConfig
from otel_agent_eval.processor.store import Store

SHIPPED = ROOT / "otel_agent_eval" / "evaluate" / "calibration.json"
AIRLINE_TOOLS = DATA / "tau-bench" / "airline-tools.json"
RETAIL_TOOLS = DATA / "tau-bench" / "retail-tools.json"
REFIT = "bash scripts/calibrate-builtin.sh"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr + (str(result.exception) if result.exit_code not in (0, 2) else "")


def dev_args(output: Path) -> list[str]:
    """The arguments of scripts/calibrate-builtin.sh, with this test's data directory."""
    return [
        "calibrate",
        str(TAU_BENCH),
        str(TAU2),
        str(TAU2_FT),
        "--tools",
        str(AIRLINE_TOOLS),
        "--tools",
        str(RETAIL_TOOLS),
        "--tools",
        str(RETAIL_TOOLS),
        "--confidences",
        "detector",
        "--output",
        str(output),
    ]


@pytest.fixture(scope="module")
def dev_calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calibration") / "calibration.json"
    code, err = cli(*dev_args(out))
    assert code == 0, err
    return out


def finding(
    evaluator: str = "loop", mode: str = "loop", *, step: int = 1, confidence: float = 0.6, **kw: Any
) -> Finding:
    return Finding(
        mode=mode,
        step=step,
        outcome=kw.pop("outcome", "terminal"),
        critique="",
        evidence="",
        evaluator=evaluator,
        confidence=confidence,
        **kw,
    )


def tiny_run(steps: int = 2) -> AgentRun:
    out: list[Any] = [UserMessage(index=0, content="hello")]
    for i in range(1, steps):
        out.append(AssistantMessage(index=i, content=f"answer {i}"))
    return AgentRun(steps=tuple(out))


def simple_calibration(runs: int, *, precision: float = 0.9) -> Calibration:
    return Calibration(
        precision=(Precision("loop", "loop", "terminal", runs, runs - 1, precision),),
        combiner=Combiner(0.0, (Feature("findings.evidence", 0.0, 1.0),)),
        base_rate=0.5,
    )


# --- the fit and the figures -------------------------------------------------------------------------------


def test_logistic_fit_recovers_a_known_relation() -> None:
    rng = random.Random(7)
    truth_b, truth_w = -0.5, (1.5, -2.0)
    x, y = [], []
    for _ in range(3000):
        row = [rng.gauss(0, 1), rng.gauss(0, 1)]
        p = 1 / (1 + math.exp(-(truth_b + sum(w * v for w, v in zip(truth_w, row, strict=True)))))
        x.append(row)
        y.append(1.0 if rng.random() < p else 0.0)
    b, w = fit_logistic(x, y, l2=1e-6)
    assert b == pytest.approx(truth_b, abs=0.15)
    assert w[0] == pytest.approx(truth_w[0], abs=0.15)
    assert w[1] == pytest.approx(truth_w[1], abs=0.15)


def test_logistic_fit_on_separable_data_is_finite_and_right() -> None:
    x = [[float(v)] for v in range(-5, 6) if v != 0]
    y = [1.0 if row[0] > 0 else 0.0 for row in x]
    b, (w,) = fit_logistic(x, y, l2=1.0)
    assert math.isfinite(w) and w > 0.5
    assert all((b + w * row[0] > 0) == (label == 1.0) for row, label in zip(x, y, strict=True))
    with pytest.raises(ValueError, match="one class"):
        fit_logistic([[0.0], [1.0]], [1.0, 1.0])


def test_figures_on_hand_computed_examples() -> None:
    scores = [0.05, 0.15, 0.15, 0.55, 0.95, 1.0]
    labels = [False, False, True, True, True, False]
    table = reliability_table(scores, labels, bins=2)
    assert [(b.lower, b.upper, b.runs) for b in table] == [(0.0, 0.5, 3), (0.5, 1.0, 3)]
    assert table[0].mean_score == pytest.approx(0.35 / 3)
    assert table[0].failure_rate == pytest.approx(1 / 3)
    assert table[1].mean_score == pytest.approx(2.5 / 3)
    assert table[1].failure_rate == pytest.approx(2 / 3)
    # ECE = 3/6·|0.1167 - 0.3333| + 3/6·|0.8333 - 0.6667|
    assert expected_calibration_error(scores, labels, bins=2) == pytest.approx(0.5 * (1 / 3 - 0.35 / 3) + 0.5 * (1 / 6))
    assert expected_calibration_error([0.0, 1.0], [False, True]) == 0.0
    assert reliability_table([0.25], [True], bins=4)[1].runs == 1  # 0.25 opens the second bin
    # 3 failed, 3 successful: pairs (f, s) with f > s: 0.15>0.05, 0.55>{0.05,0.15}, 0.95>{0.05,0.15}, 0.15=0.15 half
    assert auroc(scores, labels) == pytest.approx((1 + 2 + 2 + 0.5) / 9)
    assert auroc([0.1, 0.2], [True, True]) is None


# --- the precision table and apply -------------------------------------------------------------------------


def test_precision_is_a_likelihood_ratio_counted_per_run_and_shrunk_to_one() -> None:
    run = tiny_run()
    items = [
        (run, [finding(step=1), finding(step=1)]),  # twice in one failed run: one run
        (run, [finding()]),
        (run, [finding(), finding("schema", "wrong_arguments")]),
        (run, []),
    ]
    labels = [True, False, True, False]
    table, base = precision_table(items, labels, prior_strength=2.0)
    assert base == 0.5
    loop = next(p for p in table if p.evaluator == "loop")
    assert (loop.runs, loop.failed) == (3, 2)
    # Seen in 2 of 2 failed and 1 of 2 successful runs, half a run added to each cell (Mantel-Haenszel over
    # one source): (2.5·3/6) / (1.5·3/6) = 5/3, shrunk by 3/(3+2) in the log; the precision at rate 0.5.
    ratio = (5 / 3) ** (3 / 5)
    assert loop.ratio == pytest.approx(ratio)
    assert loop.precision == pytest.approx(ratio / (ratio + 1))


def test_a_finding_that_only_marks_a_source_is_worth_nothing() -> None:
    """A detector firing in every run of a source that fails 80% of the time, and in no run of one that
    fails 20% of the time, is "80% precise" on the pooled runs: within each source it tells nothing."""
    run = tiny_run()
    items: list[Any] = []
    labels: list[bool] = []
    groups: list[str] = []
    for source, failed_share in (("often", 0.8), ("rarely", 0.2)):
        for i in range(50):
            items.append((run, [finding()] if source == "often" else []))
            labels.append(i < 50 * failed_share)
            groups.append(source)
    pooled, _ = precision_table(items, labels)
    stratified, rate = precision_table(items, labels, groups)
    assert pooled[0].precision > 0.7  # pooled over sources, the base rate of the source it fires in
    assert stratified[0].ratio == pytest.approx(1.0, abs=0.1)  # within sources: no information
    assert rate == pytest.approx(0.5)  # the mean of the sources' failure rates
    assert stratified[0].precision == pytest.approx(0.5, abs=0.03)


def test_apply_replaces_confidence_only_with_enough_support() -> None:
    f = finding(confidence=0.3)
    assert simple_calibration(runs=5).apply([f])[0].confidence == 0.9
    assert simple_calibration(runs=4).apply([f])[0].confidence == 0.3  # too little support: the prior stays
    other = finding("schema", "wrong_arguments", confidence=0.7)
    error = finding("loop", "evaluator_error", confidence=1.0)
    recovered = finding(confidence=0.3, outcome="recovered")
    assert [x.confidence for x in simple_calibration(runs=50).apply([other, error, recovered])] == [0.7, 1.0, 0.3]
    cal = simple_calibration(runs=5)
    assert cal.apply(cal.apply([f])) == cal.apply([f])


def test_engine_with_a_calibration_applies_it_and_scores_with_it() -> None:
    run = AgentRun(
        steps=(
            UserMessage(index=0, content="hi"),
            AssistantMessage(index=1, content=""),  # an empty answer: model_output finds it
        )
    )
    plain = Engine(plugins=False)
    raw = plain.findings(run)
    assert raw
    kinds = {(f.evaluator, f.mode, f.outcome) for f in raw}
    cal = Calibration(
        precision=tuple(Precision(e, m, o, 10, 1, 0.123) for e, m, o in kinds),  # type: ignore[arg-type]
        combiner=Combiner(-1.0, (Feature("run.steps", 0.0, 0.5),)),
        base_rate=0.5,
    )
    engine = Engine(plugins=False, calibration=cal)
    assert {f.confidence for f in engine.findings(run)} == {0.123}
    evaluation = engine.evaluate(run)
    assert evaluation.failure_score == pytest.approx(1 / (1 + math.exp(1.0 - 0.5 * math.log1p(2))), abs=1e-6)
    assert evaluation.outcome == "success"  # 0.123 < 0.5: every finding is a suspicion now
    assert Engine(plugins=False, calibration=cal, score=lambda *_: 0.25).evaluate(run).failure_score == 0.25


def test_features_are_from_the_run_and_its_findings_only() -> None:
    run = AgentRun(
        steps=(
            UserMessage(index=0, content="change it"),
            AssistantMessage(index=1, tool_calls=()),
            ToolExecution(index=2, name="write", call_id="c", arguments={}, error="boom"),
            ToolExecution(index=3, name="read", call_id="d", arguments={}, error="boom"),
            ToolExecution(index=4, name="read", call_id="e", arguments={}, result="ok"),
            AssistantMessage(index=5, content="Done."),
        ),
        outcome=ApplicationOutcome(success=False),
    )
    decisive = finding(confidence=0.8)
    weak = finding("turn_shape", "policy_violation", confidence=0.2)
    values = features(run, [decisive, weak], [decisive])
    assert values["mode.loop.terminal"] == 0.8
    assert values["mode.loop.deciding"] == 1.0
    assert "mode.loop.suspicions" not in values
    assert values["mode.policy_violation.suspicions"] == pytest.approx(math.log1p(1))
    assert values["run.steps"] == pytest.approx(math.log1p(6))
    assert values["run.tool_errors"] == pytest.approx(math.log1p(2))
    assert values["run.unresolved_tool_errors"] == pytest.approx(math.log1p(1))  # "read" succeeded later
    assert values["run.ends_with_answer"] == 1.0
    assert values["findings.evidence"] == pytest.approx(-math.log((1 - 0.8) * (1 - 0.2)))
    assert features(replace(run, outcome=None), [decisive, weak], [decisive]) == values


# --- the file ----------------------------------------------------------------------------------------------


def synthetic(sources: int = 3, per_source: int = 40, seed: int = 3) -> tuple[list[Any], list[bool], list[str]]:
    rng = random.Random(seed)
    items, labels, groups = [], [], []
    for s in range(sources):
        for i in range(per_source):
            failed = rng.random() < 0.3 + 0.15 * s
            found = []
            if rng.random() < (0.7 if failed else 0.2):
                found.append(finding(confidence=0.6))
            if rng.random() < 0.5:
                found.append(finding("turn_shape", "policy_violation", confidence=0.3))
            items.append((tiny_run(2 + (i % 5)), found))
            labels.append(failed)
            groups.append(f"source-{s}")
    return items, labels, groups


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    items, labels, groups = synthetic()
    cal = fit(items, labels, groups, feature_groups=("evidence", "modes", "run"), fitted={"command": "test"})
    path = tmp_path / "cal.json"
    cal.save(path)
    back = Calibration.load(path)
    assert back.to_dict() == cal.to_dict()
    assert back.validation is not None and len(back.validation.sources) == 3
    for run, found in items[:10]:
        flags = [f for f in cal.apply(found) if f.confidence >= 0.5]
        assert back.score(run, cal.apply(found), flags) == pytest.approx(
            cal.score(run, cal.apply(found), flags), abs=1e-5
        )


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.pop("combiner"), "(top level)"),
        (lambda d: d["precision"][0].update(runs="many"), "precision/0/runs"),
        (lambda d: d["precision"][0].update(precision=1.5), "precision/0/precision"),
        (lambda d: d["precision"][0].update(failed=10**6), "precision/0/failed"),
        (lambda d: d["combiner"]["features"][0].update(name="mode.x"), "combiner/features/0/name"),
        (lambda d: d["combiner"]["features"][0].update(name="run.unheard_of"), "combiner/features/0/name"),
        (lambda d: d.update(surprise=1), "(top level)"),
    ],
)
def test_a_bad_file_is_an_error_naming_file_and_field(tmp_path: Path, edit: Any, field: str) -> None:
    items, labels, groups = synthetic()
    data = fit(items, labels, groups, feature_groups=("evidence", "run")).to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as caught:
        Calibration.load(path)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert str(path) in str(caught.value)


def test_unreadable_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        Calibration.load(tmp_path / "x.json")
    with pytest.raises(InputError, match="cannot read"):
        Calibration.load(tmp_path / "missing.json")


# --- leave-one-source-out ----------------------------------------------------------------------------------


def test_loso_scores_a_source_with_a_fit_that_never_saw_it() -> None:
    items, labels, groups = synthetic()
    every = ("evidence", "modes", "run")
    # Every fold states its probabilities at one failure rate (given here; by default that of all runs).
    cv = leave_one_source_out(items, labels, groups, feature_groups=every, rate=0.4)
    held = [i for i, g in enumerate(groups) if g == "source-1"]
    train = [i for i, g in enumerate(groups) if g != "source-1"]
    alone = fit(
        [items[i] for i in train],
        [labels[i] for i in train],
        [groups[i] for i in train],
        feature_groups=every,
        rate=0.4,
        validate=False,
    )
    assert [cv.scores[i] for i in held] == pytest.approx([alone.score_item(items[i]) for i in held])
    # The held-out source's labels (and its other runs) change nothing about its scores.
    flipped = [not y if g == "source-1" else y for y, g in zip(labels, groups, strict=True)]
    again = leave_one_source_out(items, flipped, groups, feature_groups=every, rate=0.4)
    assert [again.scores[i] for i in held] == pytest.approx([cv.scores[i] for i in held])


def test_a_relation_that_holds_only_within_each_source_does_not_help_out_of_source() -> None:
    """Runs' length tells failure within each source, but the other way round in each: fitted on all, it
    separates; held out, it cannot."""
    items, labels, groups = [], [], []
    for s, long_fails in enumerate((True, False, True, False)):
        for i in range(30):
            failed = i % 2 == 0
            length = 8 if failed == long_fails else 2
            items.append((tiny_run(length), []))
            labels.append(failed)
            groups.append(f"s{s}")
    cal = fit(items, labels, feature_groups=("run",))
    cv = leave_one_source_out(items, labels, groups, feature_groups=("run",))
    assert cv.validation.pooled.auroc is not None
    assert cv.validation.pooled.auroc <= 0.5
    # and nothing is learnt in sample either: pooled, length says nothing
    assert auroc([cal.score_item(item) for item in items], labels) == pytest.approx(0.5, abs=0.01)


def test_single_source_has_no_validation() -> None:
    items, labels, _ = synthetic(sources=1)
    assert fit(items, labels, ["only"] * len(items)).validation is None
    with pytest.raises(ValueError, match="two sources"):
        leave_one_source_out(items, labels, ["only"] * len(items))


# --- the command -------------------------------------------------------------------------------------------


def test_calibrate_on_the_dev_data_and_evaluate_with_it(dev_calibration: Path, tmp_path: Path) -> None:
    cal = Calibration.load(dev_calibration)
    assert cal.validation is not None
    assert [s.runs for s in cal.validation.sources] == [100, 40, 40]
    assert [s.failed for s in cal.validation.sources] == [69, 6, 6]
    assert cal.fitted["command"].startswith("otel-agent-eval calibrate ")
    plain, calibrated = tmp_path / "plain.jsonl", tmp_path / "calibrated.jsonl"
    args = [str(TAU2), "--tools", str(RETAIL_TOOLS)]
    assert cli("evaluate", *args, "--calibration", "none", "-o", str(plain))[0] == 0
    assert cli("evaluate", *args, "--calibration", str(dev_calibration), "-o", str(calibrated))[0] == 0
    a = [json.loads(line) for line in plain.read_text().splitlines()]
    b = [json.loads(line) for line in calibrated.read_text().splitlines()]
    assert len(a) == len(b) == 40
    assert all(0.0 <= r["failure_score"] <= 1.0 for r in b)
    assert [r["failure_score"] for r in a] != [r["failure_score"] for r in b]
    # The shipped kind keeps the detectors' confidences; a calibration of measured confidences puts them in.
    kept = {f["confidence"] for r in b for f in r["failures"] + r["suspicions"]}
    assert kept == {f["confidence"] for r in a for f in r["failures"] + r["suspicions"]}
    measured_file = tmp_path / "measured.json"
    code, err = cli(*[a if a != "detector" else "measured" for a in dev_args(measured_file)])
    assert code == 0, err
    measured_cal = Calibration.load(measured_file)
    assert measured_cal.confidences == "measured"
    assert cli("evaluate", *args, "--calibration", str(measured_file), "-o", str(calibrated))[0] == 0
    c = [json.loads(line) for line in calibrated.read_text().splitlines()]
    confidences = {f["confidence"] for r in c for f in r["failures"] + r["suspicions"]}
    measured = {round(p.precision, 4) for p in measured_cal.precision if p.runs >= measured_cal.min_support}
    assert confidences & measured


def test_the_builtin_calibration_is_usable_by_name(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert cli("evaluate", str(TAU2), "--tools", str(RETAIL_TOOLS), "--calibration", "builtin", "-o", str(out))[0] == 0
    assert default_calibration() is default_calibration()


def test_outcomes_jsonl_are_joined_by_trace_id(tmp_path: Path) -> None:
    runs = [r for r in load_runs(TAU2, tools=load_tools(RETAIL_TOOLS)) if isinstance(r, AgentRun)]
    outcomes = tmp_path / "outcomes.jsonl"
    # The team's own signal: the first 12 runs failed, the next 20 succeeded; the rest keep their reward.
    lines = [
        {"trace_id": r.trace_id.upper() if r.trace_id else "", "success": i >= 12} for i, r in enumerate(runs[:32])
    ]
    outcomes.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    rest_failed = sum(1 for r in runs[32:] if r.reference and r.reference.reward == 0)
    out = tmp_path / "cal.json"
    code, err = cli("calibrate", str(TAU2), "--tools", str(RETAIL_TOOLS), "--outcomes", str(outcomes), "-o", str(out))
    assert code == 0, err
    assert "no leave-one-source-out figures" in err
    fitted = json.loads(out.read_text())["fitted"]
    assert fitted["sources"][0]["failed"] == 12 + rest_failed
    assert fitted["sources"][0]["runs"] == 40


def test_outcomes_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "outcomes.jsonl"
    bad.write_text('{"trace_id": "ab", "success": true}\n{"trace_id": "cd", "success": "yes"}\n')
    code, err = cli("calibrate", str(TAU2), "--outcomes", str(bad), "-o", str(tmp_path / "c.json"))
    assert code == 2
    assert f"{bad}: line 2: success" in err


def _runs_with_outcomes(limit: int = 40) -> list[AgentRun]:
    runs = [r for r in load_runs(TAU_BENCH, tools=load_tools(AIRLINE_TOOLS)) if isinstance(r, AgentRun)][:limit]
    return [
        replace(r, reference=None, outcome=ApplicationOutcome(success=bool(r.reference and r.reference.reward)))
        for r in runs
    ]


def test_calibrate_reads_outcomes_the_application_set_in_traces_and_in_a_store(tmp_path: Path) -> None:
    runs = _runs_with_outcomes()
    failed = sum(1 for r in runs if r.outcome and not r.outcome.success)
    writer = RunSpanWriter()
    traces = tmp_path / "traces.json"
    traces.write_text("\n".join(request_to_json(encode_spans(writer.spans(r))) for r in runs[:20]) + "\n")
    store = Store(tmp_path / "store" / "agent-eval.sqlite")
    for r in runs[20:]:
        assert r.trace_id
        store.save_trace(r.trace_id, "agent", [], encode_spans(writer.spans(r)).SerializeToString())
    store.close()
    out = tmp_path / "cal.json"
    code, err = cli("calibrate", str(traces), "--data-dir", str(tmp_path / "store"), "-o", str(out))
    assert code == 0, err
    cal = Calibration.load(out)
    assert cal.validation is not None
    assert [s.runs for s in cal.validation.sources] == [20, 20]
    assert sum(s.failed for s in cal.validation.sources) == failed
    assert "leave-one-source-out" in err


def test_calibrate_needs_both_outcomes_and_known_options(tmp_path: Path) -> None:
    out = str(tmp_path / "c.json")
    assert cli("calibrate", "-o", out)[0] == 2
    code, err = cli("calibrate", str(TAU2), "--tools", str(RETAIL_TOOLS), "--tools", str(RETAIL_TOOLS), "-o", out)
    assert code == 2 and "--tools given 2 times" in err
    assert cli("calibrate", str(TAU2), "--features", "words", "-o", out)[0] == 2
    only_success = tmp_path / "o.jsonl"
    runs = [r for r in load_runs(TAU2) if isinstance(r, AgentRun)]
    only_success.write_text("\n".join(json.dumps({"trace_id": r.trace_id, "success": True}) for r in runs))
    code, err = cli("calibrate", str(TAU2), "--outcomes", str(only_success), "-o", out)
    assert code == 2 and "needs failed and successful runs" in err


def test_a_bad_calibration_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1}')
    code, err = cli("evaluate", str(TAU2), "--calibration", str(bad), "-o", str(tmp_path / "r.jsonl"))
    assert code == 2
    assert str(bad) in err and "base_rate" in err
    code, err = cli(
        "evaluate", str(TAU2), "--calibration", str(tmp_path / "none.json"), "-o", str(tmp_path / "r.jsonl")
    )
    assert code == 2 and "none.json: cannot read" in err
    code, err = cli(
        "serve",
        "--calibration",
        str(bad),
        "--data-dir",
        str(tmp_path / "d"),
        "--grpc-endpoint",
        "",
        "--http-endpoint",
        "",
        "--metrics-endpoint",
        "",
    )
    assert code == 2 and str(bad) in err


def test_serve_config_takes_a_calibration(dev_calibration: Path, tmp_path: Path) -> None:
    config = ServeConfig.of(
        grpc_endpoint=None, http_endpoint=None, metrics_endpoint=None, data_dir=tmp_path, calibration=dev_calibration
    )
    processor = Processor(config)
    try:
        assert processor.engine.calibration is not None
        assert processor.engine.score == processor.engine.calibration.score
    finally:
        processor.metrics.shutdown()
        processor.store.close()


# --- the shipped file --------------------------------------------------------------------------------------


def _numbers(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items() if k != "name"}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return obj


def test_the_shipped_calibration_is_current(dev_calibration: Path) -> None:
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    refit = json.loads(dev_calibration.read_text(encoding="utf-8"))
    stale = f"otel_agent_eval/evaluate/calibration.json is stale (a detector changed?): refit with `{REFIT}`"
    for key in ("base_rate", "min_support", "prior_strength", "precision", "combiner", "validation"):
        assert _numbers(shipped[key]) == _numbers(refit[key]), f"{key}: {stale}"
    assert shipped["fitted"]["evaluators"] == refit["fitted"]["evaluators"], stale
    assert shlex.split(shipped["fitted"]["command"])[:2] == ["otel-agent-eval", "calibrate"]
    assert default_calibration().to_dict()["combiner"] == Calibration.load(SHIPPED).to_dict()["combiner"]


def test_shipped_calibration_scores_are_probabilities() -> None:
    cal = default_calibration()
    run = tiny_run(4)
    value = Evaluation.of(run, cal.apply([finding(confidence=0.9)]), score=cal.score).failure_score
    assert 0.0 < value < 1.0
