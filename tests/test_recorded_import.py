"""Every real recorded run imports: one step and one span per message, in order, with the right attributes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EXPECTED_RUNS, RECORDED_FILES, TAU2, TAU_BENCH
from helpers import run_facts
from opentelemetry.trace import StatusCode

from otel_agent_eval.errors import InputError
from otel_agent_eval.ingest.recorded import load_runs
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.instrument.recorded import RunSpanWriter
from otel_agent_eval.model import AgentRun, AssistantMessage, ToolExecution, UserMessage


def raw_messages(path: Path) -> list[list[dict[str, Any]]]:
    data = json.loads(path.read_text())
    if isinstance(data, list):
        return [run["traj"] for run in data]
    return [sim["messages"] for sim in data["simulations"]]


def load_all(path: Path) -> list[AgentRun]:
    items = list(load_runs(path))
    errors = [i for i in items if isinstance(i, InputError)]
    assert not errors, errors[:3]
    return [i for i in items if isinstance(i, AgentRun)]


@pytest.fixture(scope="module", params=RECORDED_FILES, ids=lambda p: p.name)
def recorded(request: pytest.FixtureRequest) -> tuple[Path, list[AgentRun], list[list[dict[str, Any]]]]:
    path: Path = request.param
    return path, load_all(path), raw_messages(path)


def test_every_run_imports(recorded: tuple[Path, list[AgentRun], list[list[dict[str, Any]]]]) -> None:
    path, runs, raw = recorded
    assert len(runs) == EXPECTED_RUNS[path] == len(raw)
    for i, run in enumerate(runs):
        assert run.source is not None and run.source.index == i and run.source.file == str(path)


def test_one_step_per_message_at_its_position(
    recorded: tuple[Path, list[AgentRun], list[list[dict[str, Any]]]],
) -> None:
    _, runs, raw = recorded
    for run, messages in zip(runs, raw, strict=True):
        expected = [(i, m["role"]) for i, m in enumerate(messages) if m["role"] != "system"]
        assert [(s.index, s.kind) for s in run.steps] == expected
        for step in run.steps:
            message = messages[step.index]
            if isinstance(step, (UserMessage, AssistantMessage)):
                assert step.content == message.get("content")
            if isinstance(step, AssistantMessage):
                assert [c.name for c in step.tool_calls] == [
                    (c.get("function") or c)["name"] for c in message.get("tool_calls") or ()
                ]
            if isinstance(step, ToolExecution):
                assert step.result == message["content"]
                call = run.tool_call(step.call_id or "", before=step.index)
                assert call is not None, f"tool result at {step.index} answers no call"
                assert (step.name, step.arguments) == (call.name, call.arguments)


def test_system_message_is_the_policy() -> None:
    runs = load_all(TAU_BENCH)
    raw = raw_messages(TAU_BENCH)
    assert all(r.system_instructions == m[0]["content"] for r, m in zip(runs, raw, strict=True))
    assert runs[0].system_instructions.startswith("# Airline Agent Policy")  # type: ignore[union-attr]
    tau2 = load_all(TAU2)
    assert all(r.system_instructions and "retail" in r.system_instructions.lower() for r in tau2)


def test_tool_errors_are_errors() -> None:
    runs = load_all(TAU_BENCH)
    tools = [s for r in runs for s in r.steps if isinstance(s, ToolExecution)]
    failed = [s for s in tools if s.error is not None]
    assert failed and all(s.result and s.result.startswith("Error:") for s in failed)
    assert all(not (s.result or "").startswith("Error:") for s in tools if s.error is None)


def test_reference_is_kept_apart() -> None:
    run = load_all(TAU_BENCH)[0]
    assert run.reference is not None and run.reference.reward == 0.0
    assert run.reference.actions[0].name == "book_reservation"
    run2 = load_all(TAU2)[0]
    assert run2.reference is not None and run2.reference.reward == 1.0
    assert [a.name for a in run2.reference.actions][:1] == ["find_user_id_by_email"]


def test_runs_without_answers_import_the_same(tmp_path: Path) -> None:
    data = json.loads(TAU_BENCH.read_text())[:5]
    stripped = copy.deepcopy(data)
    for run in stripped:
        del run["reward"], run["info"]
    (tmp_path / "full.json").write_text(json.dumps(data))
    (tmp_path / "bare.json").write_text(json.dumps(stripped))
    full = load_all(tmp_path / "full.json")
    bare = load_all(tmp_path / "bare.json")
    assert [run_facts(r) for r in full] == [run_facts(r) for r in bare]
    assert all(r.reference is None for r in bare)

    tau2 = json.loads(TAU2.read_text())
    for sim in tau2["simulations"]:
        del sim["reward_info"]
    del tau2["tasks"]
    (tmp_path / "tau2.json").write_text(json.dumps(tau2))
    assert [run_facts(r) for r in load_all(tmp_path / "tau2.json")] == [run_facts(r) for r in load_all(TAU2)]


def test_spans_one_per_message_in_order(recorded: tuple[Path, list[AgentRun], list[list[dict[str, Any]]]]) -> None:
    _, runs, _ = recorded
    writer = RunSpanWriter()
    for run in runs[:20]:
        root, *children = writer.spans(run)
        assert root.name.startswith("invoke_agent") and root.parent is None
        assert root.attributes is not None and root.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert len(children) == len(run.steps)
        assert all(c.parent is not None and c.parent.span_id == root.context.span_id for c in children)  # type: ignore[union-attr]
        assert len({c.context.trace_id for c in children} | {root.context.trace_id}) == 1  # type: ignore[union-attr]
        by_time = sorted(children, key=lambda s: s.start_time or 0)
        assert [c.attributes["agent_eval.step.index"] for c in by_time] == [s.index for s in run.steps]  # type: ignore[index]
        for span, step in zip(children, run.steps, strict=True):
            attrs = span.attributes
            assert attrs is not None
            assert attrs["agent_eval.step.index"] == step.index
            assert attrs["agent_eval.step.kind"] == step.kind
            if isinstance(step, AssistantMessage):
                assert attrs["gen_ai.operation.name"] == "chat"
                [message] = json.loads(str(attrs["gen_ai.output.messages"]))
                assert message["role"] == "assistant"
                calls = [p for p in message["parts"] if p["type"] == "tool_call"]
                assert [(p["id"], p["name"], p["arguments"]) for p in calls] == [
                    (c.id, c.name, c.arguments) for c in step.tool_calls
                ]
            elif isinstance(step, ToolExecution):
                assert span.name == f"execute_tool {step.name}"
                assert attrs["gen_ai.tool.name"] == step.name
                assert attrs["gen_ai.tool.call.id"] == step.call_id
                assert json.loads(str(attrs["gen_ai.tool.call.arguments"])) == step.arguments
                assert attrs["gen_ai.tool.call.result"] == step.result
                assert (span.status.status_code is StatusCode.ERROR) == (step.error is not None)
            else:
                [message] = json.loads(str(attrs["gen_ai.input.messages"]))
                assert message == {"role": "user", "parts": [{"type": "text", "content": step.content}]}


def test_spans_read_back_to_the_same_steps(recorded: tuple[Path, list[AgentRun], list[list[dict[str, Any]]]]) -> None:
    _, runs, _ = recorded
    writer = RunSpanWriter()
    for run in runs:
        [back] = runs_from_spans(writer.spans(run))
        assert run_facts(back) == run_facts(run)
        assert back.system_instructions == run.system_instructions
        assert back.source == run.source
        assert back.reference == run.reference
        assert back.conversation_id == run.conversation_id
