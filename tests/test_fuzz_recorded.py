"""Fuzzing the recorded-run importer and the commands that read files: never a traceback.

Random documents shaped like τ-bench results, τ² results and OpenAI message lists (with values of every type
where a reader expects one, deep nesting, lone surrogates), written as JSON or JSON Lines, whole, truncated or
as bytes that are not UTF-8, are read by ``load_runs`` / ``read_runs`` into runs and :class:`InputError`
items naming the file (a file that cannot be read at all raises one), the runs evaluate, and ``import``,
``evaluate``, ``tree`` and ``calibrate`` exit 0 or 2 -- 2 with a message naming the file -- never 1 with a
traceback.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from fuzzing import fuzz
from hypothesis import example, given
from hypothesis import strategies as st

from otel_agent_eval.cli import main
from otel_agent_eval.errors import InputError
from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.files import read_runs
from otel_agent_eval.ingest.recorded import load_runs
from otel_agent_eval.model import AgentRun

ENGINE = Engine()

any_text = st.text(st.characters(exclude_categories=()), max_size=10)  # lone surrogates included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)


def deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


DEEP_TEXT = "[" * 100_000 + "]" * 100_000  # as text: too deep for json.dumps to write as a value
names = st.sampled_from(["get_order", "cancel_order", "transfer_to_human_agents", ""])


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four: files of odd values everywhere would be refused before a reader is reached."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: good if ok else odd)


arguments = mostly(
    st.dictionaries(st.sampled_from(["order_id", "reason"]), json_values, max_size=2).map(json.dumps),
    st.one_of(
        st.dictionaries(st.sampled_from(["order_id", "reason", "x"]), json_values, max_size=3),
        st.just(DEEP_TEXT),
        st.integers(1, 250).map(lambda n: json.dumps({"order_id": deep(n)})),
        st.just('{"order_id": "#W1"'),
        json_values,
    ),
)
tool_calls = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["c1", "c2"]) | json_values,
        "type": st.just("function"),
        "function": st.fixed_dictionaries({}, optional={"name": names | json_values, "arguments": arguments})
        | json_values,
        "name": names,
        "arguments": arguments,
        "requestor": st.sampled_from(["user", "assistant", "robot"]),
    },
)
content = st.one_of(
    any_text,
    st.none(),
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "thinking", "reasoning", "image_url"])},
            optional={"text": json_values, "thinking": json_values, "content": json_values},
        )
        | json_values,
        max_size=3,
    ),
    json_values,
    st.sampled_from(['{"message": "Done."}', '{"thought": "x", "response": "y"}', "Error: no such order"]),
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["system", "user", "assistant", "tool", "function", "robot"]) | json_values,
        "content": content,
        "tool_calls": st.lists(tool_calls, max_size=2) | json_values,
        "tool_call_id": st.sampled_from(["c1", "c2", "c3"]) | json_values,
        "id": st.sampled_from(["c1", "c2"]) | json_values,
        "name": names | json_values,
        "error": json_values,
        "requestor": st.sampled_from(["user", "assistant", "robot"]) | json_values,
        "reasoning_content": json_values,
        "function_call": tool_calls | json_values,
        "timestamp": st.sampled_from(["2025-01-01T00:00:00", "2025-01-01T00:00:01+02:00", "soon"]) | json_values,
        "usage": st.fixed_dictionaries({}, optional={"prompt_tokens": json_values}) | json_values,
        "raw_data": json_values,
    },
)
TOOL_NAMES = ["get_order", "cancel_order", "transfer_to_human_agents"]
results = st.one_of(
    json_values.map(json.dumps),
    any_text,
    st.just("Error: order not found"),
    st.just(DEEP_TEXT),
    st.integers(1, 250).map(lambda n: json.dumps(deep(n))),
)
schemas = st.one_of(
    st.just({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}),
    st.just({"$ref": "#"}),
    st.just({"type": 5}),
    st.integers(1, 120).map(lambda n: {"type": "object", "properties": {"a": deep(n)}}),
    json_values,
)
tool_defs = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("function"), "function": st.fixed_dictionaries({"name": st.sampled_from(TOOL_NAMES)})},
        optional={"description": any_text, "parameters": schemas},
    )
    | json_values,
    max_size=3,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[Any]:
    """A plausible conversation (user turns, tool calls and their results, answers), then a field or two of
    it replaced by a random value: most runs can be read, and the readers meet odd values in real places."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(any_text)})
    for turn in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(content)})
        calls: list[dict[str, Any]] = [
            {
                "id": f"c{turn}{i}",
                "type": "function",
                "function": {"name": draw(st.sampled_from(TOOL_NAMES)), "arguments": draw(arguments)},
            }
            for i in range(draw(st.integers(0, 2)))
        ]
        if calls:
            messages.append({"role": "assistant", "content": draw(st.none() | any_text), "tool_calls": calls})
            for call in calls:
                name = call["function"]["name"]
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "id": call["id"],
                        "name": name,
                        "content": draw(results),
                    }
                )
        messages.append({"role": "assistant", "content": draw(content)})
    for _ in range(draw(st.integers(0, 2))):
        message = draw(st.sampled_from(messages))
        key = draw(st.sampled_from(sorted({*message, "role", "content", "tool_calls", "requestor", "error"})))
        message[key] = draw(json_values | results)
    return messages


message_lists = st.one_of(conversations(), conversations(), st.lists(messages | json_values, max_size=5))
actions = st.lists(
    st.fixed_dictionaries({}, optional={"name": names, "kwargs": json_values, "arguments": json_values}) | json_values,
    max_size=2,
)
tau_bench_runs = st.fixed_dictionaries(
    {"traj": mostly(message_lists, json_values)},
    optional={
        "task_id": json_values,
        "trial": json_values,
        "reward": json_values,
        "info": st.fixed_dictionaries(
            {}, optional={"task": st.fixed_dictionaries({}, optional={"actions": actions, "outputs": json_values})}
        )
        | json_values,
    },
)
tau2_files = st.fixed_dictionaries(
    {
        "simulations": st.lists(
            st.fixed_dictionaries(
                {"messages": mostly(message_lists, json_values)},
                optional={
                    "id": json_values,
                    "task_id": st.sampled_from(["1", "2"]) | json_values,
                    "start_time": st.sampled_from(["2025-01-01T00:00:00", "x"]) | json_values,
                    "end_time": json_values,
                    "reward_info": st.fixed_dictionaries({}, optional={"reward": json_values}) | json_values,
                },
            ),
            max_size=3,
        ).flatmap(lambda sims: mostly(st.just(sims), st.lists(json_values, max_size=2)))
    },
    optional={
        "info": st.fixed_dictionaries(
            {},
            optional={
                "environment_info": st.fixed_dictionaries(
                    {}, optional={"policy": any_text | json_values, "tool_defs": tool_defs | json_values}
                ),
                "agent_info": json_values,
            },
        )
        | json_values,
        "tasks": st.lists(
            st.fixed_dictionaries(
                {"id": st.sampled_from(["1", "2"])},
                optional={"evaluation_criteria": st.fixed_dictionaries({}, optional={"actions": actions})},
            )
            | json_values,
            max_size=2,
        ),
    },
)
openai_files = st.one_of(
    message_lists,
    st.fixed_dictionaries(
        {"messages": mostly(message_lists, json_values)}, optional={"tools": tool_defs | json_values, "id": json_values}
    ),
    st.lists(message_lists | st.fixed_dictionaries({"messages": message_lists}), max_size=3),
)
documents = st.one_of(st.lists(mostly(tau_bench_runs, json_values), max_size=3), tau2_files, openai_files, json_values)


def render(document: Any, mode: str) -> bytes:
    if mode == "jsonl" and isinstance(document, list):
        return "\n".join(json.dumps(item) for item in document).encode()
    text = json.dumps(document, ensure_ascii=mode == "ascii")
    return text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: a file that is not UTF-8


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file name and its bytes: a document written whole, truncated, with a byte changed, or too deep."""
    mode = draw(st.sampled_from(["ascii", "utf-8", "jsonl"]))
    data = render(draw(documents), mode)
    how = draw(st.sampled_from(["whole", "whole", "whole", "whole", "truncated", "byte", "deep"]))
    if how == "truncated" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "byte" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    elif how == "deep":
        depth = draw(st.integers(100, 100_000))
        data = b"[" * depth + data + b"]" * depth
    return ("runs.jsonl" if mode == "jsonl" else "runs.json"), data


@contextmanager
def written(name: str, data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path


def read_all(path: Path, reader: Any) -> list[AgentRun]:
    """Every item read, checked: runs, and errors naming the file; a file that cannot be read raises one."""
    runs = []
    try:
        items = list(reader(path))
    except InputError as exc:
        assert exc.file == str(path), exc
        return []
    for item in items:
        if isinstance(item, InputError):
            assert item.file == str(path), item
            str(item).encode("utf-8")  # printable as it is reported
        else:
            assert isinstance(item, AgentRun)
            runs.append(item)
    return runs


# The crash inputs found so far: 100 000-deep JSON (RecursionError), tool arguments that are 100 000-deep JSON
# text (RecursionError), a lone surrogate in a message (UnicodeEncodeError when the import is written), an
# integer of 5000 digits (ValueError from json.loads), not UTF-8.
CRASHES = [
    ("runs.json", DEEP_TEXT.encode()),
    ("runs.jsonl", b'{"role": "user", "content": "hi"}\n' + b"[" * 100_000 + b"\n"),
    (
        "runs.json",
        json.dumps(
            [{"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": DEEP_TEXT}}]}]
        ).encode(),
    ),
    ("runs.json", b'[{"role": "user", "content": "a\\ud800b"}, {"role": "assistant", "content": "\\udfff"}]'),
    ("runs.json", b'[{"role": "user", "content": "hi", "\\ud800": 1}]'),
    ("runs.json", b'[{"role": "user", "content": ' + b"1" * 5000 + b"}]"),
    ("runs.json", b'[{"role": "user", "content": "\xff\xfe"}]'),
    ("runs.json", b'{"simulations": [{"messages": [{"role": "user", "content": "hi"}]'),  # truncated
]


@fuzz(200)
@given(files())
@example(CRASHES[0])
@example(CRASHES[1])
@example(CRASHES[2])
@example(CRASHES[3])
@example(CRASHES[4])
@example(CRASHES[5])
@example(CRASHES[6])
@example(CRASHES[7])
def test_random_files_are_read_into_runs_and_input_errors(file: tuple[str, bytes]) -> None:
    logging.disable(logging.WARNING)
    try:
        with written(*file) as path:
            read_all(path, load_runs)
            for run in read_all(path, read_runs):
                evaluation = ENGINE.evaluate(run)
                # No detector failed on what the readers made of the file (the engine reports that as a finding).
                assert not [f.evidence for f in evaluation.failures if f.mode == "evaluator_error"]
                json.dumps(evaluation.to_dict(), ensure_ascii=False).encode("utf-8")
    finally:
        logging.disable(logging.NOTSET)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def check_commands(path: Path) -> None:
    out = path.parent / "out.json"
    for command in (
        ["import", str(path), "--out", str(out)],
        ["evaluate", str(path), "--output", str(out)],
        ["tree", str(path)],
        ["calibrate", str(path), "--output", str(out)],
    ):
        code, err = invoke(*command)
        assert code in (0, 2), (command, code, err)
        if code == 2 and command[0] != "calibrate":  # calibrate also says when the runs' outcomes do not suffice
            assert str(path) in err, (command, err)
        assert "Traceback" not in err
    if out.exists():
        out.read_text(encoding="utf-8")


@fuzz(25)
@given(files())
@example(CRASHES[0])
@example(CRASHES[2])
@example(CRASHES[3])
@example(CRASHES[5])
def test_commands_exit_0_or_2_naming_the_file(file: tuple[str, bytes]) -> None:
    logging.disable(logging.WARNING)
    try:
        with written(*file) as path:
            check_commands(path)
    finally:
        logging.disable(logging.NOTSET)


def test_too_deep_json_is_exit_2_with_its_place() -> None:
    with written("runs.json", DEEP_TEXT.encode()) as path:
        code, err = invoke("evaluate", str(path), "--output", str(path.parent / "out.json"))
    assert code == 2
    assert f"{path}: not JSON: nested deeper than 200 levels at line 1 column 201" in err


def test_a_lone_surrogate_is_imported_as_the_replacement_character() -> None:
    with written("runs.json", CRASHES[3][1]) as path:
        out = path.parent / "out.json"
        code, err = invoke("import", str(path), "--out", str(out))
        assert code == 0, err
        assert "a\ufffdb" in out.read_text(encoding="utf-8")


def test_deep_tool_arguments_are_an_error_naming_the_run_and_field() -> None:
    with written(*CRASHES[2]) as path:
        [item] = load_runs(path)
    assert isinstance(item, InputError)
    assert str(item) == (
        f"{path}: run 0: messages[0].tool_calls[0].arguments: tool arguments are not JSON "
        "(nested deeper than 200 levels at char 200)"
    )


# --- the other inputs of the commands, and OTLP traces `tree` could not draw ---------------------------------


def test_every_input_file_of_evaluate_and_calibrate_is_exit_2_naming_it() -> None:
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs.json"
        runs.write_text(json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]))
        out = str(Path(folder) / "out.json")
        cases = {
            "deep.json": (DEEP_TEXT.encode(), "not JSON: nested deeper than 200 levels"),
            "latin1.json": (b'{"\xff": 1}', "not UTF-8 text (byte 2)"),
            "deep.yaml": (b"[" * 100_000, "not YAML: nested too deeply"),
            "latin1.yaml": (b"name: \xff", "not UTF-8 text (byte 6)"),
            "pattern.yaml": (b'name: x\nmatch:\n  all: ["("]\n', "match: not a regular expression"),
            "outcomes.jsonl": (b'{"trace_id": "t", "success": true}\n' + b"[" * 100_000, "line 2: not JSON: nested"),
        }
        for name, (data, _) in cases.items():
            (Path(folder) / name).write_bytes(data)

        def refused(name: str, *args: str) -> None:
            code, err = invoke(*args)
            assert code == 2, (name, err)
            assert f"{Path(folder) / name}: " in err and cases[name][1] in err, (name, err)

        for name in ("deep.json", "latin1.json"):
            refused(name, "evaluate", str(runs), "-o", out, "--calibration", str(Path(folder) / name))
            refused(name, "evaluate", str(runs), "-o", out, "--tools", str(Path(folder) / name))
        for name in ("deep.yaml", "latin1.yaml", "pattern.yaml"):
            refused(name, "evaluate", str(runs), "-o", out, "--policy-pack", str(Path(folder) / name))
        refused("outcomes.jsonl", "calibrate", str(runs), "-o", out, "--outcomes", str(Path(folder) / "outcomes.jsonl"))


def test_a_file_name_that_is_not_utf8_is_read_and_named_with_the_replacement_character() -> None:
    with tempfile.TemporaryDirectory() as folder:
        name = os.path.join(folder, b"runs-\xff.json".decode("utf-8", "surrogateescape"))
        Path(name).write_text(json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]))
        out = Path(folder) / "out.json"
        for command in (["import", name, "--out", str(out)], ["evaluate", name, "-o", str(out)], ["tree", name]):
            code, err = invoke(*command)
            assert code == 0, (command, err)
        assert "runs-\ufffd.json" in out.read_text(encoding="utf-8")


def test_tree_draws_a_span_that_shares_its_id_with_its_parent_and_a_long_chain() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from otel_agent_eval.otlp_json import request_to_json

    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    trace = b"\x01" * 16
    spans.add(trace_id=trace, span_id=b"\x0a" * 8, name="root", start_time_unix_nano=1)
    spans.add(trace_id=trace, span_id=b"\x0a" * 8, parent_span_id=b"\x0a" * 8, name="again", start_time_unix_nano=2)
    for i in range(1, 3000):  # a chain deeper than Python's recursion limit
        parent = (i - 1).to_bytes(8, "big") if i > 1 else b"\x0a" * 8
        spans.add(trace_id=trace, span_id=i.to_bytes(8, "big"), parent_span_id=parent, name=f"s{i}")
    with written("trace.json", request_to_json(request).encode()) as path:
        result = CliRunner().invoke(main, ["tree", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 3001 and "s2999" in result.stdout
