"""`otel-agent-eval evaluate` on the real data: every file, both modes, OTLP input, and the honesty guard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DATA, EXPECTED_RUNS, RECORDED_FILES, TAU2, TAU_BENCH

from otel_agent_eval.cli import main


def tools_for(path: Path) -> Path:
    return DATA / "tau-bench" / ("airline-tools.json" if "airline" in path.name else "retail-tools.json")


def evaluate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["evaluate", *args])
    return result.exit_code, result.stderr


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("path", RECORDED_FILES, ids=lambda p: p.name)
def test_every_file_evaluates_in_both_modes(path: Path, tmp_path: Path) -> None:
    free, ref = tmp_path / "free.jsonl", tmp_path / "ref.jsonl"
    assert evaluate(str(path), "--tools", str(tools_for(path)), "-o", str(free))[0] == 0
    assert evaluate(str(path), "--reference", "-o", str(ref))[0] == 0
    for out in (free, ref):
        lines = results(out)
        assert len(lines) == EXPECTED_RUNS[path]
        assert [line["source"]["index"] for line in lines] == list(range(EXPECTED_RUNS[path]))
        for line in lines:
            assert line["outcome"] in ("success", "recovered", "terminal")
            assert 0.0 <= line["failure_score"] <= 1.0
            assert len(line["trace_id"]) == 32
            terminal = [f for f in line["failures"] if f["outcome"] == "terminal" and f["category"] != "evaluator"]
            assert (line["outcome"] == "terminal") == bool(terminal)
            for f in line["failures"]:
                assert f["critique"] and f["evidence"] and 0 < f["confidence"] <= 1


def test_reference_mode_labels_exactly(tmp_path: Path) -> None:
    out = tmp_path / "ref.jsonl"
    assert evaluate(str(TAU_BENCH), "--reference", "-o", str(out))[0] == 0
    first = results(out)[0]  # task 0: the booking was made with other payment amounts than expected
    assert first["outcome"] == "terminal"
    assert [(f["mode"], f["evaluator"]) for f in first["failures"]] == [("wrong_arguments", "reference")]
    assert "payment_methods" in first["failures"][0]["critique"]


def test_reference_mode_needs_references(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]))
    code, err = evaluate(str(plain), "--reference", "-o", str(tmp_path / "o.jsonl"))
    assert code == 2 and "no run carries expected actions" in err


def test_otlp_json_input_gives_the_same_results(tmp_path: Path) -> None:
    traces = tmp_path / "traces.json"
    result = CliRunner().invoke(main, ["import", str(TAU2), "--tools", str(tools_for(TAU2)), "-o", str(traces)])
    assert result.exit_code == 0, result.stderr
    direct, via = tmp_path / "direct.jsonl", tmp_path / "via.jsonl"
    assert evaluate(str(TAU2), "--tools", str(tools_for(TAU2)), "-o", str(direct))[0] == 0
    assert evaluate(str(traces), "-o", str(via))[0] == 0
    for a, b in zip(results(direct), results(via), strict=True):
        assert a["trace_id"] == b["trace_id"] and a["source"] == b["source"]
        assert (a["outcome"], a["failure_score"]) == (b["outcome"], b["failure_score"])
        assert [(f["mode"], f["step"]) for f in a["failures"]] == [(f["mode"], f["step"]) for f in b["failures"]]
        assert all(f["span_id"] for f in b["failures"])  # read from spans: every finding names its span


ANSWERS = ("reward", "reward_info", "evaluation_criteria", "user_scenario")


def strip_answers(value: Any) -> Any:
    """The file without anything a deployed agent's spans would not hold."""
    if isinstance(value, dict):
        out = {k: strip_answers(v) for k, v in value.items() if k not in ANSWERS}
        if isinstance(out.get("info"), dict):
            out["info"].pop("task", None)
            out["info"].pop("reward_info", None)
        return out
    if isinstance(value, list):
        return [strip_answers(v) for v in value]
    return value


@pytest.mark.parametrize("path", RECORDED_FILES, ids=lambda p: p.name)
def test_reference_free_evaluation_never_reads_the_answers(path: Path, tmp_path: Path) -> None:
    stripped_dir = tmp_path / "stripped"
    stripped_dir.mkdir()
    stripped = stripped_dir / path.name  # same name: same trace ids
    stripped.write_text(json.dumps(strip_answers(json.loads(path.read_text()))))
    assert "evaluation_criteria" not in stripped.read_text() and '"reward"' not in stripped.read_text()
    full_out, stripped_out = tmp_path / "full.jsonl", tmp_path / "stripped.jsonl"
    assert evaluate(str(path), "--tools", str(tools_for(path)), "-o", str(full_out))[0] == 0
    assert evaluate(str(stripped), "--tools", str(tools_for(path)), "-o", str(stripped_out))[0] == 0
    full, bare = results(full_out), results(stripped_out)
    for line in (*full, *bare):
        line["source"].pop("file")
    assert full == bare


def test_a_trace_split_over_lines_is_one_run(tmp_path: Path) -> None:
    traces = tmp_path / "traces.json"
    assert CliRunner().invoke(main, ["import", str(TAU2), "-o", str(traces)]).exit_code == 0
    request = json.loads(traces.read_text().splitlines()[0])
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    lines = []
    for part in (spans[: len(spans) // 2], spans[len(spans) // 2 :]):
        copy = json.loads(json.dumps(request))
        copy["resourceSpans"][0]["scopeSpans"][0]["spans"] = part
        lines.append(json.dumps(copy))
    split = tmp_path / "split.json"
    split.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    assert evaluate(str(split), "-o", str(out))[0] == 0
    [line] = results(out)
    assert (
        line["source"]["index"] == 0
        and line["trace_id"] == request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    )
