"""Reading the evaluator's output: ``results.jsonl``, one JSON object per agent run.

Each line is ``{"source": {"file", "index", "id"}, "trace_id", "agent", "outcome", "failure_score", "failures": [...],
"suspicions": [...]}``; ``agent`` and ``suspicions`` are optional (files written before they existed have neither),
fields beyond these are ignored, blank lines are skipped. A line that cannot be read raises
:class:`~otel_agent_eval.errors.InputError` naming the file, the line and the field:

>>> parse_result({"source": {"file": "a.json", "index": 0}, "outcome": "fatal"}, file="r.jsonl", line=3)
Traceback (most recent call last):
...
otel_agent_eval.errors.InputError: r.jsonl: line 3: outcome: 'fatal' is not success, recovered or terminal
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

from ..errors import InputError
from ..ingest.jsonfile import loads

RunOutcome = Literal["success", "recovered", "terminal"]
FailureOutcome = Literal["terminal", "recovered"]
RUN_OUTCOMES: tuple[RunOutcome, ...] = ("success", "recovered", "terminal")
FAILURE_OUTCOMES: tuple[FailureOutcome, ...] = ("terminal", "recovered")


@dataclass(frozen=True)
class FailureRecord:
    """One finding on a run: a failure mode at a step, terminal or recovered, with its critique."""

    mode: str
    category: str
    step: int | None
    span_id: str | None
    outcome: FailureOutcome
    critique: str
    evidence: str
    evaluator: str
    confidence: float | None
    evidence_kind: str = "structural"
    """``structural``, ``textual`` or ``judge`` (an evaluation model's finding)."""


@dataclass(frozen=True, order=True)
class TraceRef:
    """A run as the report lists it: a label to show, and the trace id to link (None: no trace to open)."""

    label: str
    trace_id: str | None


@dataclass(frozen=True)
class RunResult:
    """The evaluation of one agent run, as one line of ``results.jsonl``."""

    source_file: str
    """The file the run came from; for live traffic (spans received by ``serve``), ``LIVE``."""
    source_index: int | None
    source_id: str | None
    trace_id: str | None
    outcome: RunOutcome
    failure_score: float | None
    failures: tuple[FailureRecord, ...]
    results_file: str
    line: int
    agent: str | None = None
    """The agent's name (``gen_ai.agent.name``, or the run's recorded implementation); None when unknown."""
    suspicions: tuple[FailureRecord, ...] = ()
    """Findings that decide no outcome (see :func:`otel_agent_eval.evaluate.findings.decides`): never failures."""
    evaluated: float | None = None
    """When the processor evaluated it (Unix time): known for runs read from its store, not from a file."""

    @property
    def ref(self) -> TraceRef:
        """How an operator finds this run again: its trace id, or, for an offline run without one, where it was
        read (``file#index``, ``file#id``, or the results line)."""
        if self.trace_id:
            return TraceRef(self.trace_id, self.trace_id)
        where = self.source_index if self.source_index is not None else self.source_id
        if where is not None:
            return TraceRef(f"{self.source_file}#{where}", None)
        return TraceRef(f"{self.results_file}:{self.line}", None)


class _Fields:
    """Typed reads of one JSON object, each error naming the field's path and the line it is on."""

    def __init__(self, obj: Mapping[str, Any], path: str, file: str, line: int) -> None:
        self.obj = obj
        self.path = path
        self.file = file
        self.line = line

    def error(self, name: str, message: str) -> InputError:
        return InputError(f"{self.path}{name}: {message}", file=self.file, field=f"line {self.line}")

    def _get(self, name: str, required: bool) -> Any:
        if name not in self.obj:
            if required:
                raise self.error(name, "missing")
            return None
        return self.obj[name]

    def string(self, name: str, *, required: bool = True, nullable: bool = False) -> str | None:
        value = self._get(name, required)
        if value is None and (nullable or not required):
            return None
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        return value

    def integer(self, name: str, *, required: bool = True, nullable: bool = False) -> int | None:
        value = self._get(name, required)
        if value is None and (nullable or not required):
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_kind(value)}")
        return value

    def number(
        self, name: str, *, required: bool = True, lo: float | None = None, hi: float | None = None
    ) -> float | None:
        value = self._get(name, required)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        number = float(value)
        if math.isnan(number) or (lo is not None and number < lo) or (hi is not None and number > hi):
            raise self.error(name, f"{value!r} is not in [{lo}, {hi}]")
        return number

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self._get(name, True)
        if value not in allowed:
            raise self.error(name, f"{value!r} is not {', '.join(allowed[:-1])} or {allowed[-1]}")
        return cast(str, value)

    def obj_field(self, name: str) -> _Fields:
        value = self._get(name, True)
        if not isinstance(value, Mapping):
            raise self.error(name, f"expected an object, got {_kind(value)}")
        return _Fields(value, f"{self.path}{name}.", self.file, self.line)

    def list_field(self, name: str) -> list[Any]:
        value = self._get(name, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, f"expected a list, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _failure(fields: _Fields) -> FailureRecord:
    return FailureRecord(
        mode=cast(str, fields.string("mode")),
        category=cast(str, fields.string("category")),
        step=fields.integer("step", nullable=True),
        span_id=fields.string("span_id", required=False, nullable=True),
        outcome=cast(FailureOutcome, fields.choice("outcome", FAILURE_OUTCOMES)),
        critique=fields.string("critique", required=False) or "",
        evidence=fields.string("evidence", required=False) or "",
        evaluator=fields.string("evaluator", required=False) or "",
        confidence=fields.number("confidence", required=False, lo=0.0, hi=1.0),
        evidence_kind=fields.string("evidence_kind", required=False) or "structural",
    )


LIVE = "(live traffic)"


def parse_result(obj: Any, *, file: str, line: int) -> RunResult:
    """One decoded line of ``results.jsonl`` as a :class:`RunResult`; bad fields raise InputError."""
    if not isinstance(obj, Mapping):
        raise InputError(f"expected a JSON object, got {_kind(obj)}", file=file, field=f"line {line}")
    top = _Fields(obj, "", file, line)
    source = top.obj_field("source")
    return RunResult(
        source_file=source.string("file", required=False, nullable=True) or LIVE,
        source_index=source.integer("index", required=False, nullable=True),
        source_id=source.string("id", required=False, nullable=True),
        trace_id=top.string("trace_id", required=False, nullable=True),
        outcome=cast(RunOutcome, top.choice("outcome", RUN_OUTCOMES)),
        failure_score=top.number("failure_score", required=False, lo=0.0, hi=1.0),
        failures=_findings(top, "failures"),
        results_file=file,
        line=line,
        agent=top.string("agent", required=False, nullable=True) or None,
        suspicions=_findings(top, "suspicions"),
    )


def _findings(top: _Fields, name: str) -> tuple[FailureRecord, ...]:
    """The findings listed under ``name`` (failures or suspicions: the same shape); absent means none."""
    found = []
    for i, item in enumerate(top.list_field(name)):
        if not isinstance(item, Mapping):
            raise top.error(f"{name}[{i}]", f"expected an object, got {_kind(item)}")
        found.append(_failure(_Fields(item, f"{name}[{i}].", top.file, top.line)))
    return tuple(found)


def iter_results(path: str | Path) -> Iterator[RunResult]:
    """The runs in one results file, in order; the first line that cannot be read raises InputError."""
    file = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- closed below; bytes so a bad encoding names its line
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(f"not UTF-8 text ({exc.reason})", file=file, field=f"line {number}") from None
                if not text.strip():
                    continue
                try:
                    obj = loads(text)  # never more than JSONDecodeError: too deep, surrogates, huge numbers
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"not valid JSON: {exc.msg} (column {exc.colno})", file=file, field=f"line {number}"
                    ) from None
                yield parse_result(obj, file=file, line=number)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None


def load_results(paths: Iterable[str | Path]) -> list[RunResult]:
    """Every run in every results file, in order."""
    return [run for path in paths for run in iter_results(path)]


StoreRow = tuple[str, float, "str | None", list[Any]]
"""A trace as :meth:`otel_agent_eval.processor.store.Store.evaluated_results` gives it: ``(trace id, evaluated,
agent, results)``."""


def runs_from_store(rows: Iterable[StoreRow], *, file: str) -> list[RunResult]:
    """The runs of the processor's stored traces, each with when it was evaluated and, when its result does not
    name it, the agent the store recorded for its trace. A result that cannot be read raises InputError naming the
    store and its position (``line N``: the N-th result, oldest first)."""
    runs: list[RunResult] = []
    for _, evaluated, agent, results in rows:
        for obj in results:
            run = parse_result(obj, file=file, line=len(runs) + 1)
            runs.append(replace(run, agent=run.agent or agent, evaluated=evaluated))
    return runs
