"""Recorded agent runs from files: τ-bench results, τ² results and plain OpenAI-style message lists.

>>> from otel_agent_eval.ingest.recorded import load_runs
>>> import json, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "chat.json")
>>> with open(path, "w") as f:
...     json.dump([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], f)
>>> [item.steps[1].content for item in load_runs(path)]
['hello']

:func:`load_runs` yields one item per run in the file: an :class:`~otel_agent_eval.model.AgentRun`, or an
:class:`~otel_agent_eval.errors.InputError` naming the run and the field when that run cannot be read, so a
caller can report and skip it (or stop, under ``--strict``). A file that cannot be read at all raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..model import AgentRun, ExpectedAction, Reference, RunSource, ToolDefinition
from .messages import ChatMessage, messages_to_steps, parse_openai_message, with_timing

Format = Literal["tau-bench", "tau2", "openai", "otlp-json"]
FORMATS: tuple[Format, ...] = ("tau-bench", "tau2", "openai", "otlp-json")
RECORDED_FORMATS: tuple[Format, ...] = ("tau-bench", "tau2", "openai")

LoadedItem = AgentRun | InputError


def read_json_or_jsonl(path: Path) -> Any:
    """The file's JSON value; a JSON Lines file comes back as the list of its lines' values."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise InputError(
                f"not JSON: {first.msg} at line {first.lineno} column {first.colno}", file=str(path)
            ) from None
        values = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"neither JSON nor JSON Lines: line {number}: {exc.msg} at column {exc.colno}", file=str(path)
                ) from None
        return _JsonLines(values)


class _JsonLines(list[Any]):
    """A list read from JSON Lines (one value per line), told apart from a JSON array."""


def detect_format(data: Any, *, file: str) -> Format:
    """Which format a decoded file is in, from its shape."""
    if isinstance(data, Mapping):
        if "simulations" in data:
            return "tau2"
        if "resourceSpans" in data or "resource_spans" in data:
            return "otlp-json"
        if "messages" in data:
            return "openai"
    if isinstance(data, list) and data:
        first = data[0]
        if isinstance(first, Mapping):
            if "traj" in first:
                return "tau-bench"
            if "resourceSpans" in first or "resource_spans" in first:
                return "otlp-json"
            if "role" in first or "messages" in first:
                return "openai"
        if isinstance(first, list):
            return "openai"
    raise InputError(
        "unrecognised format: expected a τ-bench list of runs with 'traj', a τ² result with 'simulations', "
        "OpenAI-style messages, or OTLP JSON traces (use --format to say which)",
        file=file,
    )


def load_runs(
    path: str | Path,
    *,
    format: Format | None = None,
    tools: Sequence[ToolDefinition] = (),
) -> Iterator[LoadedItem]:
    """Read every run in a recorded-run file.

    ``tools`` are given to runs that carry no tool definitions of their own.
    """
    path = Path(path)
    data = read_json_or_jsonl(path)
    fmt = format or detect_format(data, file=str(path))
    if fmt == "otlp-json":
        raise InputError(
            "holds OTLP JSON traces, not recorded runs; read it with otel_agent_eval.ingest.otlp", file=str(path)
        )
    reader = {"tau-bench": _tau_bench_runs, "tau2": _tau2_runs, "openai": _openai_runs}[fmt]
    tool_defs = tuple(tools)
    for item in reader(data, str(path)):
        if isinstance(item, AgentRun):
            # A recorded run's trace id comes from its source: its import and its evaluation name one trace.
            trace_id = item.source.trace_id() if item.source else None
            item = replace(item.with_tools(tool_defs), trace_id=item.trace_id or trace_id)
        yield item


def load_tools(path: str | Path) -> tuple[ToolDefinition, ...]:
    """Tool definitions from a JSON file holding an OpenAI function list."""
    data = read_json_or_jsonl(Path(path))
    if isinstance(data, Mapping) and isinstance(data.get("tools"), list):
        data = data["tools"]
    if not isinstance(data, list):
        raise InputError("is not a list of tool definitions", file=str(path))
    tools = []
    for i, obj in enumerate(data):
        if not isinstance(obj, Mapping):
            raise InputError("tool definition is not an object", file=str(path), field=f"[{i}]")
        try:
            tools.append(ToolDefinition.from_openai(obj))
        except ValueError as exc:
            raise InputError(str(exc), file=str(path), field=f"[{i}]") from None
    return tuple(tools)


# --- τ-bench ----------------------------------------------------------------------------------------------


def _tau_bench_runs(data: Any, file: str) -> Iterator[LoadedItem]:
    if not isinstance(data, list):
        raise InputError("a τ-bench file is a JSON list of runs", file=file)
    for index, obj in enumerate(data):
        try:
            yield _tau_bench_run(obj, file, index)
        except InputError as exc:
            yield exc.located(file=file, run=index)


def _tau_bench_run(obj: Any, file: str, index: int) -> AgentRun:
    if not isinstance(obj, Mapping):
        raise InputError("run is not an object")
    traj = obj.get("traj")
    if not isinstance(traj, list):
        raise InputError("missing or not a list" if traj is None else "not a list", field="traj")
    messages = [parse_openai_message(m, field=f"traj[{i}]") for i, m in enumerate(traj)]
    system, steps = messages_to_steps(messages)
    run_id = _join_id(obj.get("task_id"), obj.get("trial"))
    reference = None
    info = obj.get("info")
    task = info.get("task") if isinstance(info, Mapping) else None
    if "reward" in obj or isinstance(task, Mapping):
        reference = Reference(
            reward=_float_or_none(obj.get("reward")),
            actions=_expected_actions(task.get("actions") if isinstance(task, Mapping) else None, "kwargs"),
            outputs=tuple(o for o in (task.get("outputs") or ()) if isinstance(o, str))
            if isinstance(task, Mapping)
            else (),
        )
    return AgentRun(
        steps=tuple(steps),
        system_instructions=system,
        conversation_id=run_id,
        reference=reference,
        source=RunSource(file=file, index=index, id=run_id),
    )


# --- τ² ---------------------------------------------------------------------------------------------------


def _tau2_runs(data: Any, file: str) -> Iterator[LoadedItem]:
    if not isinstance(data, Mapping) or not isinstance(data.get("simulations"), list):
        raise InputError("a τ² result is an object with a 'simulations' list", file=file, field="simulations")
    info = _object(data.get("info"))
    env = _object(info.get("environment_info"))
    policy = env.get("policy") if isinstance(env.get("policy"), str) else None
    tools: tuple[ToolDefinition, ...] = ()
    if isinstance(env.get("tool_defs"), list):
        try:
            tools = tuple(ToolDefinition.from_openai(t) for t in env["tool_defs"])
        except (ValueError, AttributeError) as exc:
            raise InputError(str(exc), file=file, field="info.environment_info.tool_defs") from None
    agent_info = _object(info.get("agent_info"))
    model = agent_info.get("llm") if isinstance(agent_info.get("llm"), str) else None
    agent_name = agent_info.get("implementation") if isinstance(agent_info.get("implementation"), str) else None
    tasks = {str(t.get("id")): t for t in data.get("tasks") or () if isinstance(t, Mapping) and t.get("id") is not None}
    for index, sim in enumerate(data["simulations"]):
        try:
            yield _tau2_run(sim, file, index, policy, tools, model, agent_name, tasks)
        except InputError as exc:
            yield exc.located(file=file, run=index)


def _tau2_run(
    sim: Any,
    file: str,
    index: int,
    policy: str | None,
    tools: tuple[ToolDefinition, ...],
    model: str | None,
    agent_name: str | None,
    tasks: Mapping[str, Any],
) -> AgentRun:
    if not isinstance(sim, Mapping):
        raise InputError("simulation is not an object")
    raw = sim.get("messages")
    if not isinstance(raw, list):
        raise InputError("missing or not a list" if raw is None else "not a list", field="messages")
    stamps = [_timestamp_ns(m.get("timestamp")) if isinstance(m, Mapping) else None for m in raw]
    messages: list[ChatMessage] = []
    for i, m in enumerate(raw):
        msg = parse_openai_message(m, field=f"messages[{i}]")
        if msg.role == "tool" and not msg.tool_call_id:
            raise InputError("tool message has no 'id' (the id of the call it answers)", field=f"messages[{i}].id")
        if msg.role == "assistant" and model:
            msg = replace(msg, model=model)
        messages.append(with_timing(msg, stamps[i], _next_stamp(stamps, i)))
    system, steps = messages_to_steps(messages)
    run_id = str(sim["id"]) if sim.get("id") is not None else None
    reference = None
    task = tasks.get(str(sim.get("task_id")))
    reward_info = sim.get("reward_info")
    if isinstance(reward_info, Mapping) or task is not None:
        criteria = task.get("evaluation_criteria") if isinstance(task, Mapping) else None
        reference = Reference(
            reward=_float_or_none(reward_info.get("reward")) if isinstance(reward_info, Mapping) else None,
            actions=_expected_actions(criteria.get("actions") if isinstance(criteria, Mapping) else None, "arguments"),
            outputs=tuple(o for o in ((criteria or {}).get("communicate_info") or ()) if isinstance(o, str)),
        )
    return AgentRun(
        steps=tuple(steps),
        system_instructions=system or policy,
        tool_definitions=tools,
        agent_name=agent_name,
        conversation_id=run_id,
        reference=reference,
        source=RunSource(file=file, index=index, id=run_id),
        start_time_ns=_timestamp_ns(sim.get("start_time")),
        end_time_ns=_timestamp_ns(sim.get("end_time")),
    )


# --- OpenAI-style message lists -----------------------------------------------------------------------------


def _openai_runs(data: Any, file: str) -> Iterator[LoadedItem]:
    """One run (a list of messages, or ``{"messages": [...]}``), or many (a list or JSON Lines of those)."""
    if isinstance(data, Mapping) or (
        isinstance(data, list) and data and isinstance(data[0], Mapping) and "role" in data[0]
    ):
        runs: list[Any] = [data]
    elif isinstance(data, list):
        runs = list(data)
    else:
        raise InputError("OpenAI-style input is a list of messages or of runs", file=file)
    for index, obj in enumerate(runs):
        try:
            yield _openai_run(obj, file, index)
        except InputError as exc:
            yield exc.located(file=file, run=index)


def _openai_run(obj: Any, file: str, index: int) -> AgentRun:
    tools: tuple[ToolDefinition, ...] = ()
    run_id = None
    field = "messages"
    if isinstance(obj, Mapping):
        raw = obj.get("messages")
        if not isinstance(raw, list):
            raise InputError("missing or not a list" if raw is None else "not a list", field="messages")
        if obj.get("tools") is not None:
            if not isinstance(obj["tools"], list):
                raise InputError("not a list", field="tools")
            try:
                tools = tuple(ToolDefinition.from_openai(t) for t in obj["tools"])
            except (ValueError, AttributeError) as exc:
                raise InputError(str(exc), field="tools") from None
        run_id = obj.get("id")
    elif isinstance(obj, list):
        raw, field = obj, ""
    else:
        raise InputError("run is neither a list of messages nor an object with 'messages'")
    messages = [parse_openai_message(m, field=f"{field}[{i}]") for i, m in enumerate(raw)]
    system, steps = messages_to_steps(messages)
    rid = str(run_id) if run_id is not None else None
    return AgentRun(
        steps=tuple(steps),
        system_instructions=system,
        tool_definitions=tools,
        conversation_id=rid,
        source=RunSource(file=file, index=index, id=rid),
    )


# --- helpers ------------------------------------------------------------------------------------------------


def _object(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (for optional parts of a file)."""
    return value if isinstance(value, Mapping) else {}


def _expected_actions(actions: Any, args_key: str) -> tuple[ExpectedAction, ...]:
    out = []
    for action in actions or ():
        if isinstance(action, Mapping) and isinstance(action.get("name"), str):
            args = action.get(args_key)
            out.append(ExpectedAction(name=action["name"], arguments=args if isinstance(args, Mapping) else {}))
    return tuple(out)


def _join_id(task_id: Any, trial: Any) -> str | None:
    if task_id is None:
        return None
    return f"{task_id}-{trial}" if trial is not None else str(task_id)


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _next_stamp(stamps: Sequence[int | None], i: int) -> int | None:
    """When message ``i`` ended: when the next message was written (it was being answered until then)."""
    start = stamps[i]
    if start is None:
        return None
    later = next((s for s in stamps[i + 1 :] if s is not None), start)
    return max(later, start)


def _timestamp_ns(value: Any) -> int | None:
    """An ISO 8601 timestamp as Unix nanoseconds (naive times are taken as UTC)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1_000_000) * 1000
