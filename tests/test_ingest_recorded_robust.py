"""Recorded-run import on input that is odd or broken: each problem costs only its run (or line), and says where."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TAU2, TAU_BENCH

from otel_agent_eval.errors import InputError
from otel_agent_eval.ingest import recorded
from otel_agent_eval.ingest.recorded import detect_format, load_runs, load_tools, read_json_or_jsonl
from otel_agent_eval.model import AgentRun, AssistantMessage, ToolCall, ToolDefinition, ToolExecution, UserMessage

CALL = {"id": "c1", "type": "function", "function": {"name": "cancel", "arguments": '{"id": "#W1"}'}}
RUN = [
    {"role": "user", "content": "Cancel #W1"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "name": "cancel", "content": "ok"},
    {"role": "assistant", "content": "Done."},
]
TAU_RUN = {"task_id": 7, "trial": 0, "reward": 1.0, "traj": [{"role": "system", "content": "Policy."}, *RUN]}


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def items(path: Path, **kw: Any) -> list[AgentRun | InputError]:
    return list(load_runs(path, **kw))


def errors(loaded: list[AgentRun | InputError]) -> list[str]:
    return [str(i) for i in loaded if isinstance(i, InputError)]


def runs(loaded: list[AgentRun | InputError]) -> list[AgentRun]:
    return [i for i in loaded if isinstance(i, AgentRun)]


def kinds(run: AgentRun) -> list[str]:
    return [s.kind for s in run.steps]


# --- item 2: the format is told from the first element of a known shape ------------------------------------------


def test_a_broken_first_run_does_not_hide_the_format(tmp_path: Path) -> None:
    assert detect_format(["not a run", 42, TAU_RUN], file="f") == "tau-bench"
    assert detect_format([{"task_id": 1}, {"messages": RUN}], file="f") == "openai"
    assert detect_format([None, RUN], file="f") == "openai"
    with pytest.raises(InputError, match="unrecognised format"):
        detect_format(["a", 1, {"x": 1}], file="f")
    path = write(tmp_path, "runs.json", ["not a run", TAU_RUN])
    loaded = items(path)
    assert errors(loaded) == [f"{path}: run 0: run is not an object"]
    assert [r.source.index for r in runs(loaded) if r.source] == [1]


# --- item 3: wrong types in optional fields are tolerated; anything else costs one run, never a traceback ----------


def test_wrong_types_in_optional_tau_bench_fields(tmp_path: Path) -> None:
    odd = [
        {**TAU_RUN, "reward": "high", "info": {"task": {"actions": 7, "outputs": 3}}},
        {**TAU_RUN, "reward": [1], "info": {"task": "a string"}},
        {**TAU_RUN, "info": 5},
    ]
    loaded = items(write(tmp_path, "odd.json", odd))
    assert errors(loaded) == []
    refs = [r.reference for r in runs(loaded)]
    assert [(ref.reward, ref.actions, ref.outputs) if ref else None for ref in refs] == [
        (None, (), ()),
        (None, (), ()),
        (1.0, (), ()),
    ]
    assert all(kinds(r) == ["user", "assistant", "tool", "assistant"] for r in runs(loaded))


def tau2_file(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    sim = {"id": "s1", "task_id": "t1", "start_time": "2025-08-01T16:16:37", "messages": copy.deepcopy(messages)}
    return {"info": {"environment_info": {"policy": "Retail policy."}}, "simulations": [sim], **extra}


TAU2_MESSAGES: list[dict[str, Any]] = [
    {"role": "assistant", "content": "Hi! How can I help?", "timestamp": "2025-08-01T16:16:38"},
    {"role": "user", "content": "Cancel #W1", "timestamp": "2025-08-01T16:16:40"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "name": "cancel", "arguments": {"id": "#W1"}, "requestor": "assistant"}],
        "timestamp": "2025-08-01T16:16:43",
        "usage": {"prompt_tokens": 3625, "completion_tokens": 24},
        "raw_data": {"finish_reason": "tool_calls"},
    },
    {
        "id": "c1",
        "role": "tool",
        "content": "ok",
        "requestor": "assistant",
        "error": False,
        "timestamp": "2025-08-01T16:16:44",
    },
    {"role": "assistant", "content": "Done.", "timestamp": "2025-08-01T16:16:47", "usage": None, "raw_data": None},
]


def test_wrong_types_in_optional_tau2_fields(tmp_path: Path) -> None:
    for extra in (
        {"tasks": 5},
        {"tasks": [{"id": "t1", "evaluation_criteria": ["not", "an", "object"]}]},
        {"tasks": [{"id": "t1", "evaluation_criteria": {"actions": 3, "communicate_info": 4}}]},
    ):
        data = tau2_file(TAU2_MESSAGES, **extra)
        data["simulations"][0]["reward_info"] = {"reward": "n/a"}
        loaded = items(write(tmp_path, "t2.json", data))
        assert errors(loaded) == [], extra
        [run] = runs(loaded)
        assert run.reference is not None and (run.reference.reward, run.reference.actions) == (None, ())
        assert kinds(run) == ["assistant", "user", "assistant", "tool", "assistant"]


def test_unexpected_errors_reading_one_run_are_that_runs_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net: a TypeError / AttributeError / ValueError in one run is an InputError for it, not a crash."""
    real = recorded._join_id

    def fragile(task_id: Any, trial: Any) -> str | None:
        if task_id == 2:
            raise TypeError("unhashable type: 'dict'")
        return real(task_id, trial)

    monkeypatch.setattr(recorded, "_join_id", fragile)
    path = write(tmp_path, "runs.json", [{**TAU_RUN, "task_id": n} for n in range(4)])
    loaded = items(path)
    assert errors(loaded) == [f"{path}: run 2: cannot be read: TypeError: unhashable type: 'dict'"]
    assert [r.source.index for r in runs(loaded) if r.source] == [0, 1, 3]


# --- items 4, 5, 43: JSON Lines, line by line; broken JSON where it breaks --------------------------------------


def test_one_corrupt_line_costs_only_that_line(tmp_path: Path) -> None:
    lines = [json.dumps({"id": "r0", "messages": RUN}), '{"id": "r1", "messages": [', "", json.dumps({"messages": RUN})]
    path = write(tmp_path, "runs.jsonl", "\n".join(lines))
    loaded = items(path)
    assert [str(i) if isinstance(i, InputError) else i.conversation_id for i in loaded] == [
        "r0",
        f"{path}: line 2: not JSON: Expecting value at column 27",
        None,
    ]
    # The run after the bad line keeps its position (the bad line counts), so its trace id does not move.
    assert [r.source.index for r in runs(loaded) if r.source] == [0, 2]


def test_errors_in_json_lines_name_the_line(tmp_path: Path) -> None:
    bad = [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]
    lines = [json.dumps({"messages": RUN}), "", json.dumps({"messages": bad})]
    path = write(tmp_path, "runs.jsonl", "\n".join(lines))
    assert errors(items(path)) == [
        f"{path}: line 3: messages[1].role: role 'robot' is not user, assistant, tool or system"
    ]


def test_errors_in_a_list_of_messages_name_the_messages(tmp_path: Path) -> None:
    bad = [*RUN[:1], {"role": "assistant", "content": None, "tool_calls": {"id": "c"}}]
    path = write(tmp_path, "one.json", bad)
    assert errors(items(path)) == [f"{path}: run 0: messages[1].tool_calls: tool_calls is not a list"]
    path = write(tmp_path, "many.json", [RUN, bad])
    assert errors(items(path)) == [f"{path}: run 1: messages[1].tool_calls: tool_calls is not a list"]


def test_broken_pretty_printed_json_is_reported_where_it_breaks(tmp_path: Path) -> None:
    text = '[\n  {"traj": [\n    {"role": "user", "content": "hi"},\n  ]}\n]\n'
    path = write(tmp_path, "pretty.json", text)
    with pytest.raises(InputError) as caught:
        read_json_or_jsonl(path)
    assert str(caught.value) == f"{path}: not JSON: Expecting value at line 4 column 3"


def test_json_lines_are_recognised_by_their_first_line_or_their_name(tmp_path: Path) -> None:
    good = json.dumps({"messages": RUN})
    # Not one JSON value, but the first line is one: JSON Lines, whatever the name.
    path = write(tmp_path, "runs.json", f"{good}\n{good}\n")
    assert [r.source.index for r in runs(items(path)) if r.source] == [0, 1]
    # A .jsonl file is JSON Lines even when its first line is the broken one.
    path = write(tmp_path, "runs.jsonl", f"{{oops\n{good}\n")
    assert [str(i) if isinstance(i, InputError) else "run" for i in items(path)] == [
        f"{path}: line 1: not JSON: Expecting property name enclosed in double quotes at column 2",
        "run",
    ]


# --- item 34: JSON Lines of messages are one run ----------------------------------------------------------------


def test_json_lines_of_messages_are_one_run(tmp_path: Path) -> None:
    path = write(tmp_path, "chat.jsonl", "\n".join(json.dumps(m) for m in RUN))
    [run] = items(path)
    assert isinstance(run, AgentRun)
    assert kinds(run) == ["user", "assistant", "tool", "assistant"]
    assert [s.index for s in run.steps] == [0, 1, 2, 3]
    tool = run.steps[2]
    assert isinstance(tool, ToolExecution) and (tool.name, tool.arguments) == ("cancel", {"id": "#W1"})


def test_json_lines_of_messages_with_a_bad_line_or_message(tmp_path: Path) -> None:
    lines = [json.dumps(m) for m in RUN]
    path = write(tmp_path, "chat.jsonl", "\n".join([*lines[:2], "{not json", *lines[2:]]))
    # A lost message would leave a hole in the run: the line is reported and the run is not imported.
    assert [str(i) for i in items(path)] == [
        f"{path}: line 3: not JSON: Expecting property name enclosed in double quotes at column 2"
    ]
    lines[3] = json.dumps({"role": "robot", "content": "x"})
    path = write(tmp_path, "chat2.jsonl", "\n".join(lines))
    assert [str(i) for i in items(path)] == [
        f"{path}: run 0: line 4.role: role 'robot' is not user, assistant, tool or system"
    ]


# --- item 15: an explicit call id must answer a call ---------------------------------------------------------------


def test_tool_result_answering_no_call_is_an_error(tmp_path: Path) -> None:
    wrong = [*RUN[:2], {**RUN[2], "tool_call_id": "c9"}, RUN[3]]
    path = write(tmp_path, "wrong.json", {"messages": wrong})
    assert errors(items(path)) == [f"{path}: run 0: messages[2].tool_call_id: answers no call"]
    data = tau2_file(TAU2_MESSAGES)
    data["simulations"][0]["messages"][3]["id"] = "c9"
    path = write(tmp_path, "t2.json", data)
    assert errors(items(path)) == [f"{path}: run 0: messages[3].id: answers no call"]


def test_tool_result_without_id_is_matched_by_position(tmp_path: Path) -> None:
    no_id = {k: v for k, v in RUN[2].items() if k != "tool_call_id"}
    [run] = runs(items(write(tmp_path, "pos.json", [*RUN[:2], no_id, RUN[3]])))
    tool = run.steps[2]
    assert isinstance(tool, ToolExecution) and (tool.call_id, tool.arguments) == ("c1", {"id": "#W1"})


def test_reused_call_ids_still_match_the_open_call(tmp_path: Path) -> None:
    """τ-bench reuses call ids across turns: each result answers the open call with its id."""
    again = {**CALL, "function": {"name": "cancel", "arguments": '{"id": "#W2"}'}}
    second = [
        {"role": "user", "content": "And #W2"},
        {"role": "assistant", "content": None, "tool_calls": [again]},
        {"role": "tool", "tool_call_id": "c1", "name": "cancel", "content": "ok too"},
        {"role": "tool", "tool_call_id": "c1", "name": "cancel", "content": "said twice"},
    ]
    [run] = runs(items(write(tmp_path, "reuse.json", [*RUN, *second])))
    tools = [s for s in run.steps if isinstance(s, ToolExecution)]
    assert [(t.index, t.arguments) for t in tools] == [(2, {"id": "#W1"}), (6, {"id": "#W2"}), (7, {"id": "#W2"})]


# --- item 1: τ² dual control: tools the user runs ------------------------------------------------------------------


DUAL = [
    {"role": "assistant", "content": "Please turn airplane mode off.", "timestamp": "2025-08-01T16:16:38"},
    {
        "role": "user",
        "content": None,
        "tool_calls": [{"id": "u1", "name": "toggle_airplane_mode", "arguments": {}, "requestor": "user"}],
        "timestamp": "2025-08-01T16:16:40",
    },
    {"id": "u1", "role": "tool", "content": "Airplane mode: OFF", "requestor": "user", "error": False},
    {"role": "user", "content": "Done, it is off.", "timestamp": "2025-08-01T16:16:42"},
]


def test_tau2_user_tool_calls_import(tmp_path: Path) -> None:
    [run] = runs(items(write(tmp_path, "telecom.json", tau2_file(DUAL))))
    assert kinds(run) == ["assistant", "user", "tool", "user"]
    user = run.steps[1]
    assert isinstance(user, UserMessage)
    assert user.tool_calls == (ToolCall(id="u1", name="toggle_airplane_mode", arguments={}),)
    tool = run.steps[2]
    assert isinstance(tool, ToolExecution)
    assert (tool.name, tool.call_id, tool.arguments, tool.result, tool.requested_by) == (
        "toggle_airplane_mode",
        "u1",
        {},
        "Airplane mode: OFF",
        "user",
    )


def test_who_asked_for_a_tool(tmp_path: Path) -> None:
    # Without requestor fields, the call's message says who asked; a requestor on the result wins.
    plain = [dict(DUAL[0]), {**DUAL[1], "tool_calls": [{"id": "u1", "name": "toggle", "arguments": {}}]}, dict(DUAL[2])]
    del plain[2]["requestor"]
    [run] = runs(items(write(tmp_path, "a.json", tau2_file(plain))))
    assert [s.requested_by for s in run.steps if isinstance(s, ToolExecution)] == ["user"]
    [run] = runs(items(write(tmp_path, "b.json", tau2_file(TAU2_MESSAGES))))
    assert [s.requested_by for s in run.steps if isinstance(s, ToolExecution)] == ["assistant"]
    odd = [dict(m) for m in TAU2_MESSAGES]
    odd[3]["requestor"] = "user"
    [run] = runs(items(write(tmp_path, "c.json", tau2_file(odd))))
    assert [s.requested_by for s in run.steps if isinstance(s, ToolExecution)] == ["user"]


def test_tool_calls_on_system_or_tool_messages_and_bad_requestors_are_errors(tmp_path: Path) -> None:
    calls = [{"id": "x", "name": "f", "arguments": {}}]
    cases = [
        ({"role": "system", "content": "s", "tool_calls": calls}, "messages[0].tool_calls: a system message carries"),
        ({"role": "tool", "id": "x", "content": "r", "tool_calls": calls}, "messages[0].tool_calls: a tool message"),
        (
            {"role": "user", "content": None, "tool_calls": [{**calls[0], "requestor": "robot"}]},
            "messages[0].tool_calls[0].requestor: requestor 'robot' is not user or assistant",
        ),
    ]
    for message, expected in cases:
        path = write(tmp_path, "t2.json", tau2_file([message]))
        [error] = errors(items(path))
        assert error.startswith(f"{path}: run 0: {expected}"), error


# --- item 24: τ² usage, finish reason and timing ---------------------------------------------------------------


def ns(stamp: str) -> int:
    return recorded._timestamp_ns(stamp) or 0


def test_tau2_usage_finish_reason_and_timing(tmp_path: Path) -> None:
    [run] = runs(items(write(tmp_path, "t2.json", tau2_file(TAU2_MESSAGES))))
    call = run.steps[2]
    assert isinstance(call, AssistantMessage)
    assert (call.input_tokens, call.output_tokens, call.finish_reason) == (3625, 24, "tool_calls")
    last = run.steps[4]
    assert isinstance(last, AssistantMessage) and (last.input_tokens, last.finish_reason) == (None, None)
    # A message is stamped when it is complete: it lasted from the previous stamp (the start, first) to its own.
    stamps = ["2025-08-01T16:16:37", *(m["timestamp"] for m in TAU2_MESSAGES)]
    assert [(s.start_time_ns, s.end_time_ns) for s in run.steps] == [
        (ns(a), ns(b)) for a, b in itertools.pairwise(stamps)
    ]


def test_tau2_real_runs_timing_and_usage() -> None:
    raw = json.loads(TAU2.read_text())["simulations"][0]
    [run, *_] = runs(list(load_runs(TAU2)))
    for step in run.steps:
        message = raw["messages"][step.index]
        assert step.end_time_ns == ns(message["timestamp"])
        previous = raw["messages"][step.index - 1]["timestamp"] if step.index else raw["start_time"]
        assert step.start_time_ns == ns(previous)
        if isinstance(step, AssistantMessage) and message.get("usage"):
            assert (step.input_tokens, step.output_tokens) == (
                message["usage"]["prompt_tokens"],
                message["usage"]["completion_tokens"],
            )
            assert step.finish_reason == message["raw_data"]["finish_reason"]


# --- item 36: one parser of tool-definition lists -------------------------------------------------------------------


def test_bad_tool_definitions_name_the_field(tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "cancel"}}, {"type": "function", "function": {}}]
    data = tau2_file(TAU2_MESSAGES)
    data["info"]["environment_info"]["tool_defs"] = tools
    path = write(tmp_path, "t2.json", data)
    with pytest.raises(InputError) as caught:
        items(path)
    assert str(caught.value) == f"{path}: info.environment_info.tool_defs[1]: tool definition has no 'name'"

    path = write(tmp_path, "runs.json", [{"messages": RUN, "tools": tools}, {"messages": RUN, "tools": tools[:1]}])
    loaded = items(path)
    assert errors(loaded) == [f"{path}: run 0: tools[1]: tool definition has no 'name'"]
    assert [r.tool_definitions for r in runs(loaded)] == [(ToolDefinition("cancel"),)]

    path = write(tmp_path, "tools.json", [tools[0], 3])
    with pytest.raises(InputError) as caught:
        load_tools(path)
    assert str(caught.value) == f"{path}: [1]: a tool definition is an object, not a int"
    path = write(tmp_path, "tools2.json", {"tools": {"name": "x"}})
    with pytest.raises(InputError) as caught:
        load_tools(path)
    assert str(caught.value) == f"{path}: tools: tool definitions are a dict, not a list"
    assert [t.name for t in load_tools(TAU_BENCH.parent / "airline-tools.json")][:1] == ["book_reservation"]


def test_dual_control_run_survives_the_trip_through_spans(tmp_path: Path) -> None:
    from helpers import run_facts

    from otel_agent_eval.ingest.spans import runs_from_spans
    from otel_agent_eval.instrument.recorded import RunSpanWriter

    [run] = runs(items(write(tmp_path, "telecom.json", tau2_file(DUAL))))
    [back] = runs_from_spans(RunSpanWriter().spans(run))
    assert run_facts(back) == run_facts(run)
    assert [(s.kind, getattr(s, "tool_calls", None), getattr(s, "requested_by", None)) for s in back.steps] == [
        (s.kind, getattr(s, "tool_calls", None), getattr(s, "requested_by", None)) for s in run.steps
    ]


def test_cli_skips_a_corrupt_line_and_strict_fails(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from otel_agent_eval.cli import main

    path = write(tmp_path, "runs.jsonl", "\n".join([json.dumps({"messages": RUN}), "{oops", json.dumps(RUN)]))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["import", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert f"skipped: {path}: line 2: not JSON" in result.stderr
    assert len(out.read_text().splitlines()) == 2
    result = CliRunner().invoke(main, ["import", str(path), "--out", str(tmp_path / "strict.json"), "--strict"])
    assert result.exit_code == 2 and f"{path}: line 2: not JSON" in result.stderr
    assert not (tmp_path / "strict.json").exists()


def test_json_lines_of_which_no_line_is_json(tmp_path: Path) -> None:
    path = write(tmp_path, "junk.jsonl", "{oops\n[1,\n")
    with pytest.raises(InputError) as caught:
        items(path)
    assert (
        str(caught.value) == f"{path}: line 1: not JSON: Expecting property name enclosed in double quotes at column 2"
    )
