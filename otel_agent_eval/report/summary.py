"""Aggregating evaluated runs: outcomes, failure modes terminal / recovered, critiques, root-cause steps, agents,
suspicions apart from failures, and (runs from the processor's store) failures over time.

Every count that names runs also lists them (:class:`~.load.TraceRef`: a trace id, or where an offline run was
read), so that a reader goes from a bar or a row to the traces behind it.

>>> from otel_agent_eval.report.load import parse_result
>>> line = {"source": {"file": "a.json", "index": 0}, "trace_id": "t", "outcome": "terminal", "failure_score": 0.9,
...         "failures": [{"mode": "wrong_arguments", "category": "tool", "step": 4, "outcome": "terminal",
...                       "critique": "Use order '#W123' as the user said."}]}
>>> s = summarize([parse_result(line, file="r.jsonl", line=1)])
>>> s.outcomes["terminal"], s.modes[0].mode, s.modes[0].tally.terminal, s.critiques[0].key
(1, 'wrong_arguments', 1, "use order '…' as the user said.")
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .load import RUN_OUTCOMES, FailureRecord, RunOutcome, RunResult, TraceRef
from .timeline import Timeline, build_timeline

#: Categories in the taxonomy's order; used to break ties and to order unknown ones last.
KNOWN_CATEGORIES = ("workflow", "user_interaction", "tool", "system", "evaluator")

_QUOTED = re.compile(r"""'[^'\n]*'|"[^"\n]*"|`[^`\n]*`|‘[^’\n]*’|“[^”\n]*”""")
# A token with a digit in it (an amount, an id such as #W2378156 or order_12, a date, a step number), without
# the sentence's own trailing punctuation.
_NUMERIC = re.compile(r"[#$€£]?[\w-]*\d(?:[\w-]|[.,:/](?=\w))*")
_SPACE = re.compile(r"\s+")


def normalize_critique(text: str) -> str:
    """A key under which near-identical critiques group: quoted values and numbers collapsed, case folded.

    >>> normalize_critique('Call get_order_details with "#W2378156" before   cancelling order #W99, step 12.')
    'call get_order_details with "…" before cancelling order #, step #.'
    """
    text = _QUOTED.sub(lambda m: m.group(0)[0] + "…" + m.group(0)[-1], text)
    text = _NUMERIC.sub("#", text)
    return _SPACE.sub(" ", text).strip().casefold()


@dataclass(frozen=True)
class Tally:
    """Failures of one kind, terminal and recovered, counted as findings and as runs affected."""

    terminal: int = 0
    recovered: int = 0
    #: runs with at least one terminal / recovered / any finding of this kind (a run may be in both)
    runs_terminal: int = 0
    runs_recovered: int = 0
    runs: int = 0

    @property
    def total(self) -> int:
        return self.terminal + self.recovered


@dataclass(frozen=True)
class ModeCount:
    category: str
    mode: str
    tally: Tally
    #: the runs affected, those with a terminal failure of this mode first
    traces: tuple[TraceRef, ...] = ()


@dataclass(frozen=True)
class CategoryCount:
    category: str
    tally: Tally
    #: the category's modes, most frequent first
    modes: tuple[ModeCount, ...]


@dataclass(frozen=True)
class CritiqueCount:
    """Critiques that say the same thing up to numbers and quoted values."""

    key: str
    #: the first critique seen under this key, as written
    example: str
    count: int
    runs: int
    terminal: int
    #: ``category.mode`` of these critiques, most frequent first
    modes: tuple[str, ...]
    #: the runs they were said about, those where one was terminal first
    traces: tuple[TraceRef, ...] = ()


@dataclass(frozen=True)
class JudgeCount:
    """What one evaluation model (``judge:<model>``) found: its failures and its own errors, apart."""

    evaluator: str
    failures: int
    runs: int
    terminal: int
    #: its failures by ``category.mode``, most first
    modes: tuple[tuple[str, int], ...]
    #: runs where it could not answer (its ``evaluator_error`` findings)
    errors: int
    traces: tuple[TraceRef, ...] = ()


@dataclass(frozen=True)
class FileCount:
    """Outcomes of the runs read from one source file (``source.file``)."""

    file: str
    runs: int
    outcomes: dict[RunOutcome, int]
    failures: int


@dataclass(frozen=True)
class AgentCount:
    """The runs of one agent (``agent`` None: runs whose agent is not named)."""

    agent: str | None
    runs: int
    outcomes: dict[RunOutcome, int]
    failures: Tally
    #: the agent's most frequent failure modes (at most :data:`TOP_AGENT_MODES`), most first
    top_modes: tuple[ModeCount, ...]
    #: the agent's terminal runs
    terminal_traces: tuple[TraceRef, ...]

    @property
    def terminal_share(self) -> float:
        return self.outcomes["terminal"] / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class SuspicionCount:
    """Suspicions of one mode: findings that decided no outcome, counted apart from the failures."""

    category: str
    mode: str
    count: int
    runs: int
    #: the first critique seen, as written
    example: str
    traces: tuple[TraceRef, ...]


TOP_AGENT_MODES = 3


@dataclass(frozen=True)
class Summary:
    runs: int
    results_files: tuple[str, ...]
    #: runs by outcome, in the order success, recovered, terminal
    outcomes: dict[RunOutcome, int]
    failures: Tally
    #: categories by total failures, most first; each with its modes the same way
    categories: tuple[CategoryCount, ...]
    #: every (category, mode), grouped by category in the order of ``categories``
    modes: tuple[ModeCount, ...]
    #: the most frequent critiques, most first
    critiques: tuple[CritiqueCount, ...]
    distinct_critiques: int
    files: tuple[FileCount, ...]
    #: step of the earliest terminal failure -> runs; runs with terminal failures whose steps are unknown are left out
    root_cause_steps: dict[int, int]
    #: runs whose outcome is terminal but which carry no terminal failure with a step
    terminal_without_root_cause: int
    mean_failure_score: dict[RunOutcome, float] = field(default_factory=dict)
    #: step of the earliest terminal failure -> the runs whose root cause is there
    root_cause_traces: dict[int, tuple[TraceRef, ...]] = field(default_factory=dict)
    #: agents by runs, most first; runs without an agent name last
    agents: tuple[AgentCount, ...] = ()
    #: suspicions by mode, most frequent first; never counted in ``failures``
    suspicions: tuple[SuspicionCount, ...] = ()
    #: runs with at least one suspicion, and those of them judged a success
    suspected_runs: int = 0
    suspected_successes: int = 0
    #: failures over time, for runs that say when they were evaluated (the processor's store); else None
    timeline: Timeline | None = None
    #: what evaluation models found (findings whose evidence kind is ``judge``), by judge, most first
    judges: tuple[JudgeCount, ...] = ()

    def root_cause_median(self) -> float | None:
        steps = [step for step, n in self.root_cause_steps.items() for _ in range(n)]
        return statistics.median(steps) if steps else None


class _TallyBuilder:
    def __init__(self) -> None:
        self.terminal = 0
        self.recovered = 0
        self.runs_terminal: set[int] = set()
        self.runs_recovered: set[int] = set()

    def add(self, run: int, failure: FailureRecord) -> None:
        if failure.outcome == "terminal":
            self.terminal += 1
            self.runs_terminal.add(run)
        else:
            self.recovered += 1
            self.runs_recovered.add(run)

    def build(self) -> Tally:
        return Tally(
            self.terminal,
            self.recovered,
            len(self.runs_terminal),
            len(self.runs_recovered),
            len(self.runs_terminal | self.runs_recovered),
        )


class _Traces:
    """Run numbers -> the runs' :class:`TraceRef`, ordered for a reader: runs where the thing was terminal first,
    then the most recently evaluated (runs from the store), then in the order read."""

    def __init__(self, runs: Sequence[RunResult]) -> None:
        self.runs = runs

    def of(self, numbers: Iterable[int], terminal: Iterable[int] = ()) -> tuple[TraceRef, ...]:
        first = set(terminal)

        def key(n: int) -> tuple[bool, float, int]:
            return n not in first, -(self.runs[n].evaluated or 0.0), n

        return tuple(dict.fromkeys(self.runs[n].ref for n in sorted(set(numbers) | first, key=key)))

    def of_tally(self, builder: _TallyBuilder) -> tuple[TraceRef, ...]:
        return self.of(builder.runs_recovered, builder.runs_terminal)


def _category_rank(category: str) -> int:
    return KNOWN_CATEGORIES.index(category) if category in KNOWN_CATEGORIES else len(KNOWN_CATEGORIES)


def _mode_order(m: ModeCount) -> tuple[int, int, str]:
    return -m.tally.total, -m.tally.terminal, m.mode


def _modes(runs: Sequence[RunResult], numbers: Iterable[int], traces: _Traces) -> list[ModeCount]:
    """The failure modes of these runs (by number), most frequent first, each with its runs."""
    by_mode: dict[tuple[str, str], _TallyBuilder] = defaultdict(_TallyBuilder)
    for number in numbers:
        for failure in runs[number].failures:
            by_mode[failure.category, failure.mode].add(number, failure)
    modes = [ModeCount(c, m, b.build(), traces.of_tally(b)) for (c, m), b in by_mode.items()]
    return sorted(modes, key=_mode_order)


def _categories(runs: Sequence[RunResult], traces: _Traces) -> list[CategoryCount]:
    by_category: dict[str, _TallyBuilder] = defaultdict(_TallyBuilder)
    for number, run in enumerate(runs):
        for failure in run.failures:
            by_category[failure.category].add(number, failure)
    modes: dict[str, list[ModeCount]] = defaultdict(list)
    for mode in _modes(runs, range(len(runs)), traces):
        modes[mode.category].append(mode)
    categories = [CategoryCount(c, b.build(), tuple(modes[c])) for c, b in by_category.items()]
    categories.sort(key=lambda c: (-c.tally.total, -c.tally.terminal, _category_rank(c.category), c.category))
    return categories


def _critiques(runs: Sequence[RunResult], traces: _Traces) -> list[CritiqueCount]:
    """Every distinct critique of a failure (suspicions are not failures), most frequent first."""
    examples: dict[str, str] = {}
    counts: Counter[str] = Counter()
    terminal: dict[str, set[int]] = defaultdict(set)
    terminal_count: Counter[str] = Counter()
    said: dict[str, set[int]] = defaultdict(set)
    modes: dict[str, Counter[str]] = defaultdict(Counter)
    for number, run in enumerate(runs):
        for failure in run.failures:
            text = " ".join(failure.critique.split())
            if not text:
                continue
            key = normalize_critique(text)
            examples.setdefault(key, text)
            counts[key] += 1
            said[key].add(number)
            modes[key][f"{failure.category}.{failure.mode}"] += 1
            if failure.outcome == "terminal":
                terminal_count[key] += 1
                terminal[key].add(number)
    critiques = [
        CritiqueCount(
            key=key,
            example=examples[key],
            count=count,
            runs=len(said[key]),
            terminal=terminal_count[key],
            modes=tuple(mode for mode, _ in modes[key].most_common()),
            traces=traces.of(said[key], terminal[key]),
        )
        for key, count in counts.items()
    ]
    critiques.sort(key=lambda c: (-c.count, -c.runs, c.key))
    return critiques


def _root_causes(runs: Sequence[RunResult]) -> tuple[dict[int, list[int]], int]:
    """Step of each run's earliest terminal failure -> those runs; and the terminal runs without one."""
    by_step: dict[int, list[int]] = defaultdict(list)
    unknown = 0
    for number, run in enumerate(runs):
        steps = [f.step for f in run.failures if f.outcome == "terminal" and f.step is not None]
        if steps:
            by_step[min(steps)].append(number)
        elif run.outcome == "terminal":
            unknown += 1
    return dict(sorted(by_step.items())), unknown


def _agents(runs: Sequence[RunResult], traces: _Traces) -> list[AgentCount]:
    """One row per agent, the busiest first; runs without an agent name together, last."""
    by_agent: dict[str | None, list[int]] = defaultdict(list)
    for number, run in enumerate(runs):
        by_agent[run.agent].append(number)
    rows = []
    for agent, numbers in by_agent.items():
        outcomes: dict[RunOutcome, int] = dict.fromkeys(RUN_OUTCOMES, 0)
        everything = _TallyBuilder()
        for n in numbers:
            outcomes[runs[n].outcome] += 1
            for failure in runs[n].failures:
                everything.add(n, failure)
        rows.append(
            AgentCount(
                agent=agent,
                runs=len(numbers),
                outcomes=outcomes,
                failures=everything.build(),
                top_modes=tuple(_modes(runs, numbers, traces)[:TOP_AGENT_MODES]),
                terminal_traces=traces.of(n for n in numbers if runs[n].outcome == "terminal"),
            )
        )
    rows.sort(key=lambda a: (a.agent is None, -a.runs, a.agent or ""))
    return rows


def _suspicions(runs: Sequence[RunResult], traces: _Traces) -> list[SuspicionCount]:
    counts: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for number, run in enumerate(runs):
        for finding in run.suspicions:
            key = finding.category, finding.mode
            counts[key] += 1
            where[key].add(number)
            text = " ".join(finding.critique.split())
            if text:
                examples.setdefault(key, text)
    rows = [
        SuspicionCount(c, m, n, len(where[c, m]), examples.get((c, m), ""), traces.of(where[c, m]))
        for (c, m), n in counts.items()
    ]
    rows.sort(key=lambda r: (-r.count, -r.runs, _category_rank(r.category), r.category, r.mode))
    return rows


def _judges(runs: Sequence[RunResult], traces: _Traces) -> list[JudgeCount]:
    found: dict[str, Counter[str]] = defaultdict(Counter)
    where: dict[str, set[int]] = defaultdict(set)
    terminal: dict[str, set[int]] = defaultdict(set)
    errors: dict[str, set[int]] = defaultdict(set)
    for number, run in enumerate(runs):
        for finding in (*run.failures, *run.suspicions):
            if finding.evidence_kind != "judge" and not finding.evaluator.startswith("judge:"):
                continue
            if finding.category == "evaluator":
                errors[finding.evaluator].add(number)
                continue
            found[finding.evaluator][f"{finding.category}.{finding.mode}"] += 1
            where[finding.evaluator].add(number)
            if finding.outcome == "terminal":
                terminal[finding.evaluator].add(number)
    rows = [
        JudgeCount(
            evaluator=name,
            failures=sum(found[name].values()),
            runs=len(where[name]),
            terminal=len(terminal[name]),
            modes=tuple(found[name].most_common()),
            errors=len(errors[name]),
            traces=traces.of(where[name], terminal[name]),
        )
        for name in sorted({*found, *errors})
    ]
    rows.sort(key=lambda r: (-r.failures, r.evaluator))
    return rows


def _files(runs: Sequence[RunResult]) -> list[FileCount]:
    per_file: dict[str, tuple[dict[RunOutcome, int], list[int]]] = {}
    for run in runs:
        outcomes, failures = per_file.setdefault(run.source_file, (dict.fromkeys(RUN_OUTCOMES, 0), [0]))
        outcomes[run.outcome] += 1
        failures[0] += len(run.failures)
    return [FileCount(file, sum(c.values()), c, f[0]) for file, (c, f) in per_file.items()]


def summarize(
    runs: Sequence[RunResult] | Iterable[RunResult], *, top: int = 10, results_files: Sequence[str] | None = None
) -> Summary:
    """The report's numbers for these runs; ``top`` critiques are kept. ``results_files`` names the files read
    (by default, those the runs came from)."""
    runs = list(runs)
    traces = _Traces(runs)
    outcomes: dict[RunOutcome, int] = dict.fromkeys(RUN_OUTCOMES, 0)
    scores: dict[RunOutcome, list[float]] = defaultdict(list)
    everything = _TallyBuilder()
    for number, run in enumerate(runs):
        outcomes[run.outcome] += 1
        if run.failure_score is not None:
            scores[run.outcome].append(run.failure_score)
        for failure in run.failures:
            everything.add(number, failure)
    categories = _categories(runs, traces)
    critiques = _critiques(runs, traces)
    root_causes, no_root_cause = _root_causes(runs)
    suspected = [run for run in runs if run.suspicions]
    return Summary(
        runs=len(runs),
        results_files=tuple(
            dict.fromkeys(results_files if results_files is not None else (r.results_file for r in runs))
        ),
        outcomes=outcomes,
        failures=everything.build(),
        categories=tuple(categories),
        modes=tuple(mode for category in categories for mode in category.modes),
        critiques=tuple(critiques[: max(top, 0)]),
        distinct_critiques=len(critiques),
        files=tuple(_files(runs)),
        root_cause_steps={step: len(numbers) for step, numbers in root_causes.items()},
        terminal_without_root_cause=no_root_cause,
        mean_failure_score={o: statistics.fmean(scores[o]) for o in RUN_OUTCOMES if scores[o]},
        root_cause_traces={step: traces.of(numbers) for step, numbers in root_causes.items()},
        agents=tuple(_agents(runs, traces)),
        suspicions=tuple(_suspicions(runs, traces)),
        suspected_runs=len(suspected),
        suspected_successes=sum(run.outcome == "success" for run in suspected),
        timeline=build_timeline(runs),
        judges=tuple(_judges(runs, traces)),
    )
