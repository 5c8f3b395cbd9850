"""The command line: import, tree, and what happens on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TAU2, TAU_BENCH

from otel_agent_eval.cli import main
from otel_agent_eval.ingest.otlp import read_otlp_json
from otel_agent_eval.ingest.spans import runs_from_request

RUN = [
    {"role": "system", "content": "Policy."},
    {"role": "user", "content": "Cancel #W1"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "cancel", "arguments": '{"id": "#W1"}'}}],
    },
    {"role": "tool", "tool_call_id": "c1", "name": "cancel", "content": "ok"},
    {"role": "assistant", "content": "Done."},
]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_import_writes_one_otlp_json_line_per_run(tmp_path: Path) -> None:
    out = tmp_path / "traces.json"
    code, _, err = invoke("import", str(TAU_BENCH), str(TAU2), "--out", str(out))
    assert code == 0, err
    assert "imported 140 runs" in err
    lines = out.read_text().splitlines()
    assert len(lines) == 140
    first = json.loads(lines[0])
    span = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16  # OTLP JSON: hex ids
    runs = [run for request in read_otlp_json(out) for run in runs_from_request(request)]
    assert len(runs) == 140
    assert runs[0].source is not None and runs[0].source.index == 0
    assert [s.index for s in runs[0].steps][:3] == [1, 2, 3]


def test_format_override_and_detection_error(tmp_path: Path) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"hello": "world"}))
    code, _, err = invoke("import", str(odd), "--out", str(tmp_path / "o.json"))
    assert code == 2 and "odd.json" in err and "unrecognised format" in err
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(RUN))
    code, _, err = invoke("import", str(plain), "--format", "openai", "--out", str(tmp_path / "o.json"))
    assert code == 0, err
    code, _, err = invoke("import", str(plain), "--format", "tau2", "--out", str(tmp_path / "o2.json"))
    assert code == 2 and "simulations" in err


def test_openai_jsonl_many_runs_with_tools(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    tools = [{"type": "function", "function": {"name": "cancel", "parameters": {"type": "object"}}}]
    path.write_text("\n".join(json.dumps({"id": f"r{i}", "messages": RUN, "tools": tools}) for i in range(3)))
    out = tmp_path / "t.json"
    code, _, err = invoke("import", str(path), "--out", str(out))
    assert code == 0, err
    runs = [r for req in read_otlp_json(out) for r in runs_from_request(req)]
    assert [r.source.id for r in runs if r.source] == ["r0", "r1", "r2"]
    assert all(r.tool_definitions[0].name == "cancel" for r in runs)
    assert [s.kind for s in runs[0].steps] == ["user", "assistant", "tool", "assistant"]


def test_tools_option_gives_definitions(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    tools = TAU_BENCH.parent / "airline-tools.json"
    code, _, err = invoke("import", str(TAU_BENCH), "--tools", str(tools), "--out", str(out))
    assert code == 0, err
    run = runs_from_request(next(read_otlp_json(out)))[0]
    assert "book_reservation" in {t.name for t in run.tool_definitions}


def test_malformed_file_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('[{"traj": [}')
    out = tmp_path / "out.json"
    code, _, err = invoke("import", str(bad), "--out", str(out))
    assert code == 2
    assert "broken.json" in err and "not JSON" in err
    assert not out.exists() and not list(tmp_path.glob(".out.json*"))


BAD_RUNS = [
    ({"traj": [{"role": "robot", "content": "x"}]}, "run 1: traj[0].role: role 'robot'"),
    ({"traj": [{"content": "x"}]}, "run 1: traj[0].role: message has no 'role'"),
    ({"task_id": 3}, "run 1: traj: missing"),
    (
        {"traj": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]},
        "run 1: traj[0].tool_calls[0].arguments: tool arguments are not JSON",
    ),
]


@pytest.mark.parametrize(("bad", "message"), BAD_RUNS)
def test_one_bad_run_is_reported_and_skipped(tmp_path: Path, bad: dict[str, object], message: str) -> None:
    good = json.loads(TAU_BENCH.read_text())[:3]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([good[0], bad, *good[1:]]))
    out = tmp_path / "out.json"
    code, _, err = invoke("import", str(path), "--out", str(out))
    assert code == 0, err
    assert f"skipped: {path}: {message}" in err
    assert "imported 3 runs" in err and "skipped 1" in err
    assert len(out.read_text().splitlines()) == 3

    code, _, err = invoke("import", str(path), "--out", str(tmp_path / "strict.json"), "--strict")
    assert code == 2 and message in err
    assert not (tmp_path / "strict.json").exists()


def test_tau2_tool_message_without_id(tmp_path: Path) -> None:
    data = json.loads(TAU2.read_text())
    sim = data["simulations"][0]
    tool_at = next(i for i, m in enumerate(sim["messages"]) if m["role"] == "tool")
    del sim["messages"][tool_at]["id"]
    path = tmp_path / "t2.json"
    path.write_text(json.dumps(data))
    code, _, err = invoke("import", str(path), "--out", str(tmp_path / "o.json"), "--strict")
    assert code == 2 and f"run 0: messages[{tool_at}].id" in err


def test_tree_prints_span_trees(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(RUN))
    assert invoke("import", str(plain), "--out", str(out))[0] == 0
    for source in (out, plain):  # an OTLP JSON file, or a recorded run imported on the fly
        code, text, err = invoke("tree", str(source))
        assert code == 0, err
        lines = text.splitlines()
        assert lines[0].startswith("trace ") and "invoke_agent" in lines[0]
        assert lines[1:] == [
            '├── [1] user_message  "Cancel #W1"',
            '├── [2] chat  → cancel(id="#W1")',
            "├── [3] execute_tool cancel  ← ok",
            '└── [4] chat  "Done."',
        ]


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke("import", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o.json"))
    assert code == 2 and "nope.json" in err


def test_stdout_is_not_half_written(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(RUN))
    code, out, err = invoke("import", str(plain), str(tmp_path / "missing.json"), "--out", "-")
    assert code == 2 and "missing.json" in err
    assert out == ""


def test_bad_output_path_is_exit_2(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(RUN))
    code, _, err = invoke("import", str(plain), "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err
    (tmp_path / "file").write_text("x")
    code, _, err = invoke("import", str(plain), "--out", str(tmp_path / "file" / "below.json"))
    assert code == 2 and "cannot write there" in err


def test_wrong_format_reading_nothing_is_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke("import", str(TAU_BENCH), "--format", "openai", "--out", str(tmp_path / "o.json"))
    assert code == 2
    assert "no run could be read" in err and "--format" in err
    assert not (tmp_path / "o.json").exists()


def test_reference_is_opt_in(tmp_path: Path) -> None:
    bare, full = tmp_path / "bare.json", tmp_path / "full.json"
    assert invoke("import", str(TAU_BENCH), "--out", str(bare))[0] == 0
    assert invoke("import", str(TAU_BENCH), "--out", str(full), "--with-reference")[0] == 0
    assert "agent_eval.reference" not in bare.read_text()
    assert "agent_eval.reference.reward" in full.read_text()
    run = runs_from_request(next(read_otlp_json(full)))[0]
    assert run.reference is not None and run.reference.reward == 0.0


def test_tree_groups_a_trace_split_over_lines(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(RUN))
    out = tmp_path / "t.json"
    assert invoke("import", str(plain), "--out", str(out))[0] == 0
    request = json.loads(out.read_text())
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    halves = []
    for part in (spans[:2], spans[2:]):  # as a batch exporter may send them
        copy = json.loads(json.dumps(request))
        copy["resourceSpans"][0]["scopeSpans"][0]["spans"] = part
        halves.append(json.dumps(copy))
    split = tmp_path / "split.json"
    split.write_text("\n".join(halves) + "\n")
    code, text, err = invoke("tree", str(split))
    assert code == 0, err
    assert text.count("trace ") == 1 and len(text.splitlines()) == 5
