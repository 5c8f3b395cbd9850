"""Failures over time, for runs that say when they were evaluated (those read from the processor's store).

The buckets have a round width (a minute, five, fifteen, thirty, an hour, ... a day, a week, thirty days), the smallest
that cuts the span of the runs into at most :data:`MAX_BUCKETS` buckets, aligned on UTC; every bucket from the
first run's to the last run's is kept, the empty ones too, so that the axis is time and a quiet hour shows.

>>> from dataclasses import replace
>>> from otel_agent_eval.report.load import parse_result
>>> line = {"source": {}, "trace_id": "t", "outcome": "terminal",
...         "failures": [{"mode": "loop", "category": "workflow", "step": 4, "outcome": "terminal"}]}
>>> runs = [replace(parse_result(line, file="s", line=1), evaluated=t) for t in (0.0, 30.0, 200.0)]
>>> t = build_timeline(runs)
>>> t.width, [(b.runs, b.terminal, b.modes) for b in t.buckets]
(60, [(2, 2, (('workflow.loop', 2, 0),)), (0, 0, ()), (0, 0, ()), (1, 1, (('workflow.loop', 1, 0),))])
>>> t.label(t.buckets[0])
'1970-01-01 00:00'
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from .load import RunResult

MINUTE, HOUR, DAY = 60, 3600, 86400
#: the widths a bucket may have, in seconds, smallest first
BUCKET_WIDTHS = (
    MINUTE,
    5 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    7 * DAY,
    30 * DAY,
)
MAX_BUCKETS = 24


@dataclass(frozen=True)
class TimeBucket:
    """The runs evaluated in ``[start, start + width)`` and their failures."""

    start: float
    runs: int
    terminal_runs: int
    #: failures (findings), terminal and recovered; suspicions are not counted
    terminal: int
    recovered: int
    #: ``(category.mode, terminal, recovered)``, the most failures first
    modes: tuple[tuple[str, int, int], ...]

    @property
    def failures(self) -> int:
        return self.terminal + self.recovered


@dataclass(frozen=True)
class Timeline:
    #: seconds per bucket
    width: int
    #: every bucket from the first run's to the last run's, in time order
    buckets: tuple[TimeBucket, ...]

    def label(self, bucket: TimeBucket) -> str:
        """The bucket's start in UTC: to the minute for buckets shorter than a day, else the date."""
        when = datetime.fromtimestamp(bucket.start, tz=timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M" if self.width < DAY else "%Y-%m-%d")

    def width_text(self) -> str:
        """The bucket width in words: ``5 min``, ``1 h``, ``7 days``."""
        if self.width < HOUR:
            return f"{self.width // MINUTE} min"
        if self.width < DAY:
            return f"{self.width // HOUR} h"
        days = self.width // DAY
        return f"{days} day{'s' if days != 1 else ''}"


def _count(first: float, last: float, width: int) -> int:
    return math.floor(last / width) - math.floor(first / width) + 1


def bucket_width(first: float, last: float) -> int:
    """The smallest round width (seconds) that cuts ``[first, last]`` into at most :data:`MAX_BUCKETS` aligned
    buckets; beyond thirty-day buckets, a multiple of thirty days.

    >>> bucket_width(0, 0), bucket_width(0, 23 * 60), bucket_width(0, 3 * 3600), bucket_width(0, 40 * 86400)
    (60, 60, 900, 604800)
    """
    for width in BUCKET_WIDTHS:
        if _count(first, last, width) <= MAX_BUCKETS:
            return width
    width = 30 * DAY * math.ceil((last - first) / (30 * DAY * (MAX_BUCKETS - 1)))
    while _count(first, last, width) > MAX_BUCKETS:  # alignment can add one bucket
        width += 30 * DAY
    return width


def build_timeline(runs: Sequence[RunResult]) -> Timeline | None:
    """Failures per time bucket of the runs that carry ``evaluated``; None when none does."""
    timed = [run for run in runs if run.evaluated is not None]
    if not timed:
        return None
    times = [run.evaluated for run in timed if run.evaluated is not None]
    width = bucket_width(min(times), max(times))
    first = math.floor(min(times) / width)
    grouped: dict[int, list[RunResult]] = defaultdict(list)
    for run, when in zip(timed, times, strict=True):
        grouped[math.floor(when / width) - first].append(run)
    count = math.floor(max(times) / width) - first + 1
    buckets = tuple(_bucket(float((first + i) * width), grouped.get(i, [])) for i in range(count))
    return Timeline(width, buckets)


def _bucket(start: float, runs: list[RunResult]) -> TimeBucket:
    terminal: Counter[str] = Counter()
    recovered: Counter[str] = Counter()
    for run in runs:
        for failure in run.failures:
            (terminal if failure.outcome == "terminal" else recovered)[f"{failure.category}.{failure.mode}"] += 1
    modes = sorted(set(terminal) | set(recovered), key=lambda m: (-terminal[m] - recovered[m], -terminal[m], m))
    return TimeBucket(
        start=start,
        runs=len(runs),
        terminal_runs=sum(run.outcome == "terminal" for run in runs),
        terminal=sum(terminal.values()),
        recovered=sum(recovered.values()),
        modes=tuple((m, terminal[m], recovered[m]) for m in modes),
    )
