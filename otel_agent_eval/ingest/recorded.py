"""Recorded agent runs from files: τ-bench results, τ² results and plain OpenAI-style message lists.

>>> from otel_agent_eval.ingest.recorded import load_runs
>>> import json, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "chat.json")
>>> with open(path, "w") as f:
...     json.dump([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], f)
>>> [item.steps[1].content for item in load_runs(path)]
['hello']

:func:`load_runs` yields one item per run in the file: an :class:`~otel_agent_eval.model.AgentRun`, or an
:class:`~otel_agent_eval.errors.InputError` naming the run (``run N`` in a JSON file, ``line N`` in a JSON
Lines file) and the field when that run cannot be read, so a caller can report and skip it (or stop, under
``--strict``). A file that cannot be read at all raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..model import AgentRun, ExpectedAction, Reference, RunSource, ToolDefinition
from .jsonfile import JsonLines, file_label
from .jsonfile import read_json_or_jsonl as read_json_or_jsonl  # re-exported: callers read files through here
from .messages import (
    REASONING_FIELDS,
    ChatMessage,
    content_reasoning,
    messages_to_steps,
    parse_openai_message,
    with_timing,
)
from .values import as_float, as_int, as_list, as_object, as_str

Format = Literal["tau-bench", "tau2", "openai", "otlp-json"]
FORMATS: tuple[Format, ...] = ("tau-bench", "tau2", "openai", "otlp-json")
RECORDED_FORMATS: tuple[Format, ...] = ("tau-bench", "tau2", "openai")

LoadedItem = AgentRun | InputError


def detect_format(data: Any, *, file: str) -> Format:
    """Which format a decoded file is in, from its shape.

    A list is judged by its first element of a known shape, so that a first run that is broken (or a corrupt
    first line of a JSON Lines file) is reported as that run, not as a file of no known format.
    """
    if isinstance(data, Mapping):
        if "simulations" in data:
            return "tau2"
        if "resourceSpans" in data or "resource_spans" in data:
            return "otlp-json"
        if "messages" in data:
            return "openai"
    if isinstance(data, list):
        for item in data:
            fmt = _item_format(item)
            if fmt is not None:
                return fmt
        if data and all(isinstance(item, InputError) for item in data):
            raise data[0]  # JSON Lines of which no line is JSON: say so, not "unrecognised format"
    raise InputError(
        "unrecognised format: expected a τ-bench list of runs with 'traj', a τ² result with 'simulations', "
        "OpenAI-style messages, or OTLP JSON traces (use --format to say which)",
        file=file,
    )


def _item_format(item: Any) -> Format | None:
    if isinstance(item, list):
        return "openai"
    if not isinstance(item, Mapping):
        return None
    if "traj" in item:
        return "tau-bench"
    if "resourceSpans" in item or "resource_spans" in item:
        return "otlp-json"
    if "role" in item or "messages" in item:
        return "openai"
    return None


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
    yield from runs_from_data(read_json_or_jsonl(path), file_label(path), format=format, tools=tools)


def runs_from_data(
    data: Any, file: str, *, format: Format | None = None, tools: Sequence[ToolDefinition] = ()
) -> Iterator[LoadedItem]:
    """:func:`load_runs` on a file already decoded (``read_json_or_jsonl``), so that it is read once."""
    path = Path(file)
    fmt = format or detect_format(data, file=file)
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
    """Tool definitions from a JSON file holding an OpenAI function list (or an object with ``tools``)."""
    data = read_json_or_jsonl(Path(path))
    if isinstance(data, Mapping) and "tools" in data:
        return parse_tools(data["tools"], file=file_label(path), field="tools")
    return parse_tools(data, file=file_label(path), field="")


def parse_tools(value: Any, *, field: str, file: str | None = None) -> tuple[ToolDefinition, ...]:
    """A list of tool definitions; a bad one is an :class:`InputError` naming the field and its position."""
    try:
        return ToolDefinition.parse_list(value)
    except ValueError as exc:
        text = str(exc)
        position, _, message = text.partition(": ") if text.startswith("[") else ("", "", text)
        raise InputError(message, file=file, field=f"{field}{position}" or None) from None


# --- one item per run, never a traceback ----------------------------------------------------------------------


def _positions(runs: Sequence[Any]) -> Iterator[tuple[int, int | None, Any]]:
    """``(index, line, value)`` of every run: ``line`` is its line number in a JSON Lines file."""
    lines: Iterable[int | None] = runs.lines if isinstance(runs, JsonLines) else [None] * len(runs)
    for index, (line, value) in enumerate(zip(lines, runs, strict=True)):
        yield index, line, value


def _each_run(
    runs: Iterable[tuple[int, int | None, Any]], file: str, read: Callable[[Any, int], AgentRun]
) -> Iterator[LoadedItem]:
    for index, line, value in runs:
        if isinstance(value, InputError):  # a JSON Lines line that is not JSON
            yield value
            continue
        try:
            yield read(value, index)
        except InputError as exc:
            yield _located(exc, file, index, line)
        except (TypeError, AttributeError, ValueError) as exc:
            # A value of a type no reader expected, deep in one run: that run is reported, the others are read.
            yield _located(InputError(f"cannot be read: {type(exc).__name__}: {exc}"), file, index, line)


def _located(exc: InputError, file: str, index: int, line: int | None) -> InputError:
    """The error with its file and its run: ``run N`` in a JSON file, ``line N`` in a JSON Lines file."""
    if line is None:
        return exc.located(file=file, run=index)
    field = f"line {line}: {exc.field}" if exc.field else f"line {line}"
    return InputError(exc.message, file=exc.file or file, run=exc.run, field=field)


# --- τ-bench ----------------------------------------------------------------------------------------------


def _tau_bench_runs(data: Any, file: str) -> Iterator[LoadedItem]:
    if not isinstance(data, list):
        raise InputError("a τ-bench file is a JSON list of runs", file=file)
    yield from _each_run(_positions(data), file, lambda obj, index: _tau_bench_run(obj, file, index))


def _tau_bench_run(obj: Any, file: str, index: int) -> AgentRun:
    if not isinstance(obj, Mapping):
        raise InputError("run is not an object")
    traj = obj.get("traj")
    if not isinstance(traj, list):
        raise InputError("missing or not a list" if traj is None else "not a list", field="traj")
    messages = [parse_openai_message(m, field=f"traj[{i}]") for i, m in enumerate(traj)]
    system, steps = messages_to_steps(messages, strict=True)
    run_id = _join_id(obj.get("task_id"), obj.get("trial"))
    reference = None
    task = as_object(obj.get("info")).get("task")
    if "reward" in obj or isinstance(task, Mapping):
        task = as_object(task)
        reference = Reference(
            reward=as_float(obj.get("reward")),
            actions=_expected_actions(task.get("actions"), "kwargs"),
            outputs=_strings(task.get("outputs")),
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
    info = as_object(data.get("info"))
    env = as_object(info.get("environment_info"))
    tools: tuple[ToolDefinition, ...] = ()
    if env.get("tool_defs") is not None:  # null in the published results
        tools = parse_tools(env["tool_defs"], file=file, field="info.environment_info.tool_defs")
    agent_info = as_object(info.get("agent_info"))
    context = _Tau2File(
        policy=as_str(env.get("policy")),
        tools=tools,
        model=as_str(agent_info.get("llm")),
        agent_name=as_str(agent_info.get("implementation")),
        tasks={
            str(t["id"]): t for t in as_list(data.get("tasks")) if isinstance(t, Mapping) and t.get("id") is not None
        },
    )
    yield from _each_run(_positions(data["simulations"]), file, lambda sim, index: context.run(sim, file, index))


@dataclass(frozen=True)
class _Tau2File:
    """What a τ² file says about all its simulations."""

    policy: str | None
    tools: tuple[ToolDefinition, ...]
    model: str | None
    agent_name: str | None
    tasks: Mapping[str, Mapping[str, Any]]

    def run(self, sim: Any, file: str, index: int) -> AgentRun:
        if not isinstance(sim, Mapping):
            raise InputError("simulation is not an object")
        raw = sim.get("messages")
        if not isinstance(raw, list):
            raise InputError("missing or not a list" if raw is None else "not a list", field="messages")
        start_ns = _timestamp_ns(sim.get("start_time"))
        messages = [self._message(m, f"messages[{i}]") for i, m in enumerate(raw)]
        system, steps = messages_to_steps(_tau2_timing(messages, raw, start_ns), strict=True)
        run_id = str(sim["id"]) if sim.get("id") is not None else None
        reference = None
        task = self.tasks.get(str(sim.get("task_id")))
        reward_info = sim.get("reward_info")
        if isinstance(reward_info, Mapping) or task is not None:
            criteria = as_object(task.get("evaluation_criteria")) if task is not None else {}
            reference = Reference(
                reward=as_float(as_object(reward_info).get("reward")),
                actions=_expected_actions(criteria.get("actions"), "arguments"),
                outputs=_strings(criteria.get("communicate_info")),
            )
        return AgentRun(
            steps=tuple(steps),
            system_instructions=system or self.policy,
            tool_definitions=self.tools,
            agent_name=self.agent_name,
            conversation_id=run_id,
            reference=reference,
            source=RunSource(file=file, index=index, id=run_id),
            start_time_ns=start_ns,
            end_time_ns=_timestamp_ns(sim.get("end_time")),
        )

    def _message(self, obj: Any, field: str) -> ChatMessage:
        msg = parse_openai_message(obj, field=field)
        if msg.role == "tool" and not msg.tool_call_id:
            raise InputError("tool message has no 'id' (the id of the call it answers)", field=f"{field}.id")
        if msg.role != "assistant":
            return msg
        usage = as_object(obj.get("usage"))
        raw_data = as_object(obj.get("raw_data"))
        return replace(
            msg,
            model=self.model,
            input_tokens=as_int(usage.get("prompt_tokens")),
            output_tokens=as_int(usage.get("completion_tokens")),
            finish_reason=as_str(raw_data.get("finish_reason")),
            reasoning=msg.reasoning or _raw_reasoning(as_object(raw_data.get("message"))),
        )


def _raw_reasoning(message: Mapping[str, Any]) -> str | None:
    """The reasoning in the provider's own answer that τ² keeps as ``raw_data.message`` (LiteLLM's
    ``reasoning_content`` or ``thinking_blocks``), for a message whose own ``reasoning`` is empty."""
    for key in REASONING_FIELDS:
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return content_reasoning(message.get("thinking_blocks"))


def _tau2_timing(messages: list[ChatMessage], raw: list[Any], start_ns: int | None) -> list[ChatMessage]:
    """τ² stamps a message when it is complete: it took from the previous stamp (or the start) to its own."""
    out = []
    previous = start_ns
    for msg, obj in zip(messages, raw, strict=True):
        end = _timestamp_ns(obj.get("timestamp"))
        if end is None:
            out.append(msg)
            continue
        out.append(with_timing(msg, end if previous is None else min(previous, end), end))
        previous = end
    return out


# --- OpenAI-style message lists -----------------------------------------------------------------------------


def _openai_runs(data: Any, file: str) -> Iterator[LoadedItem]:
    """One run (a list of messages, ``{"messages": [...]}``, or JSON Lines of messages), or many (a list or
    JSON Lines of runs)."""
    if isinstance(data, JsonLines) and _messages_only(data):
        bad = [v for v in data if isinstance(v, InputError)]
        if bad:  # a message that cannot be read leaves a hole in the run: the run is not read, each line reported
            yield from bad
            return
        fields = [f"line {n}" for n in data.lines]
        yield from _each_run([(0, None, data)], file, lambda raw, index: _chat_run(raw, fields, file, index))
    elif isinstance(data, Mapping) or (
        isinstance(data, list) and not isinstance(data, JsonLines) and _is_message(_first_known(data))
    ):
        yield from _each_run([(0, None, data)], file, lambda obj, index: _openai_run(obj, file, index))
    elif isinstance(data, list):
        yield from _each_run(_positions(data), file, lambda obj, index: _openai_run(obj, file, index))
    else:
        raise InputError("OpenAI-style input is a list of messages or of runs", file=file)


def _openai_run(obj: Any, file: str, index: int) -> AgentRun:
    if isinstance(obj, list):
        return _chat_run(obj, [f"messages[{i}]" for i in range(len(obj))], file, index)
    if not isinstance(obj, Mapping):
        raise InputError("run is neither a list of messages nor an object with 'messages'")
    raw = obj.get("messages")
    if not isinstance(raw, list):
        raise InputError("missing or not a list" if raw is None else "not a list", field="messages")
    tools = parse_tools(obj["tools"], field="tools") if obj.get("tools") is not None else ()
    run_id = str(obj["id"]) if obj.get("id") is not None else None
    return _chat_run(raw, [f"messages[{i}]" for i in range(len(raw))], file, index, tools, run_id)


def _chat_run(
    raw: Sequence[Any],
    fields: Sequence[str],
    file: str,
    index: int,
    tools: tuple[ToolDefinition, ...] = (),
    run_id: str | None = None,
) -> AgentRun:
    messages = [parse_openai_message(m, field=f) for m, f in zip(raw, fields, strict=True)]
    system, steps = messages_to_steps(messages, strict=True)
    return AgentRun(
        steps=tuple(steps),
        system_instructions=system,
        tool_definitions=tools,
        conversation_id=run_id,
        source=RunSource(file=file, index=index, id=run_id),
    )


def _is_message(value: Any) -> bool:
    return isinstance(value, Mapping) and "role" in value


def _first_known(data: Sequence[Any]) -> Any:
    return next((item for item in data if _item_format(item) is not None), None)


def _messages_only(data: JsonLines) -> bool:
    """Every line is one message (or not JSON at all), and at least one is: the file is one run."""
    return any(_is_message(v) for v in data) and all(_is_message(v) or isinstance(v, InputError) for v in data)


# --- helpers ------------------------------------------------------------------------------------------------


def _expected_actions(actions: Any, args_key: str) -> tuple[ExpectedAction, ...]:
    out = []
    for action in as_list(actions):
        if isinstance(action, Mapping) and isinstance(action.get("name"), str):
            args = action.get(args_key)
            out.append(ExpectedAction(name=action["name"], arguments=args if isinstance(args, Mapping) else {}))
    return tuple(out)


def _strings(values: Any) -> tuple[str, ...]:
    return tuple(v for v in as_list(values) if isinstance(v, str))


def _join_id(task_id: Any, trial: Any) -> str | None:
    if task_id is None:
        return None
    return f"{task_id}-{trial}" if trial is not None else str(task_id)


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
