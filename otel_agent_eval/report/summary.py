"""Aggregating evaluated runs: outcomes, failure modes terminal / recovered, critiques, root-cause steps.

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

from .load import RUN_OUTCOMES, FailureRecord, RunOutcome, RunResult

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


@dataclass(frozen=True)
class FileCount:
    """Outcomes of the runs read from one source file (``source.file``)."""

    file: str
    runs: int
    outcomes: dict[RunOutcome, int]
    failures: int


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


def _category_rank(category: str) -> int:
    return KNOWN_CATEGORIES.index(category) if category in KNOWN_CATEGORIES else len(KNOWN_CATEGORIES)


def summarize(
    runs: Sequence[RunResult] | Iterable[RunResult], *, top: int = 10, results_files: Sequence[str] | None = None
) -> Summary:
    """The report's numbers for these runs; ``top`` critiques are kept. ``results_files`` names the files read
    (by default, those the runs came from)."""
    runs = list(runs)
    outcomes: dict[RunOutcome, int] = dict.fromkeys(RUN_OUTCOMES, 0)
    scores: dict[RunOutcome, list[float]] = defaultdict(list)
    everything = _TallyBuilder()
    by_category: dict[str, _TallyBuilder] = defaultdict(_TallyBuilder)
    by_mode: dict[tuple[str, str], _TallyBuilder] = defaultdict(_TallyBuilder)
    critique_examples: dict[str, str] = {}
    critique_counts: Counter[str] = Counter()
    critique_terminal: Counter[str] = Counter()
    critique_runs: dict[str, set[int]] = defaultdict(set)
    critique_modes: dict[str, Counter[str]] = defaultdict(Counter)
    per_file: dict[str, tuple[dict[RunOutcome, int], list[int]]] = {}
    root_causes: Counter[int] = Counter()
    no_root_cause = 0

    for number, run in enumerate(runs):
        outcomes[run.outcome] += 1
        if run.failure_score is not None:
            scores[run.outcome].append(run.failure_score)
        file_outcomes, file_failures = per_file.setdefault(run.source_file, (dict.fromkeys(RUN_OUTCOMES, 0), [0]))
        file_outcomes[run.outcome] += 1
        file_failures[0] += len(run.failures)
        for failure in run.failures:
            everything.add(number, failure)
            by_category[failure.category].add(number, failure)
            by_mode[failure.category, failure.mode].add(number, failure)
            text = " ".join(failure.critique.split())
            if text:
                key = normalize_critique(text)
                critique_examples.setdefault(key, text)
                critique_counts[key] += 1
                critique_terminal[key] += failure.outcome == "terminal"
                critique_runs[key].add(number)
                critique_modes[key][f"{failure.category}.{failure.mode}"] += 1
        terminal_steps = [f.step for f in run.failures if f.outcome == "terminal" and f.step is not None]
        if terminal_steps:
            root_causes[min(terminal_steps)] += 1
        elif run.outcome == "terminal":
            no_root_cause += 1

    mode_counts: dict[str, list[ModeCount]] = defaultdict(list)
    for (category, mode), builder in by_mode.items():
        mode_counts[category].append(ModeCount(category, mode, builder.build()))
    categories = [
        CategoryCount(
            category,
            builder.build(),
            tuple(sorted(mode_counts[category], key=lambda m: (-m.tally.total, -m.tally.terminal, m.mode))),
        )
        for category, builder in by_category.items()
    ]
    categories.sort(key=lambda c: (-c.tally.total, -c.tally.terminal, _category_rank(c.category), c.category))
    critiques = [
        CritiqueCount(
            key=key,
            example=critique_examples[key],
            count=count,
            runs=len(critique_runs[key]),
            terminal=critique_terminal[key],
            modes=tuple(mode for mode, _ in critique_modes[key].most_common()),
        )
        for key, count in critique_counts.items()
    ]
    critiques.sort(key=lambda c: (-c.count, -c.runs, c.key))
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
        files=tuple(
            FileCount(file, sum(counts.values()), counts, failures[0]) for file, (counts, failures) in per_file.items()
        ),
        root_cause_steps=dict(sorted(root_causes.items())),
        terminal_without_root_cause=no_root_cause,
        mean_failure_score={o: statistics.fmean(scores[o]) for o in RUN_OUTCOMES if scores[o]},
    )
