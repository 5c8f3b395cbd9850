"""The report as text for the terminal: aligned tables, coloured (click.style) only when asked.

The main table is the study's chart as numbers: failure modes grouped by category, each split terminal /
recovered, counted as findings and as runs affected, most frequent first. Below each table, the traces behind
its rows (the first few; ``--traces N`` for more, ``--trace-url`` to print them as links).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import click

from .load import TraceRef
from .summary import ModeCount, Summary, Tally
from .timeline import Timeline
from .traces import TraceLinks

OUTCOME_COLOURS = {"success": "green", "recovered": "yellow", "terminal": "red"}
CRITIQUE_WIDTH = 100
BAR_WIDTH = 30


@dataclass(frozen=True)
class Cell:
    text: str
    fg: str | None = None
    bold: bool = False
    dim: bool = False


Row = Sequence[Cell | str]


def _cell(value: Cell | str) -> Cell:
    return value if isinstance(value, Cell) else Cell(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(
    header: Row,
    rows: Sequence[Row],
    *,
    align: str,
    color: bool,
    groups: Sequence[tuple[str, int, int]] = (),
    indent: str = "  ",
    gap: str = "  ",
) -> list[str]:
    """Lines of an aligned table: ``align`` has one 'l' or 'r' per column; ``groups`` are (label, first, last)
    column spans given a header line of their own above ``header``."""
    cells = [[_cell(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i].text) for row in cells) for i in range(len(align))]
    for label, first, last in groups:  # widen a group's last column if its label does not fit
        span = sum(widths[first : last + 1]) + len(gap) * (last - first)
        widths[last] += max(0, len(label) - span)

    def style(cell: Cell, text: str) -> str:
        if not color or not text or not (cell.fg or cell.bold or cell.dim):
            return text
        return click.style(text, fg=cell.fg, bold=cell.bold or None, dim=cell.dim or None)

    lines = []
    if groups:
        line, column = indent, 0
        for label, first, last in groups:
            line += " " * (sum(widths[column:first]) + len(gap) * (first - column))
            span = sum(widths[first : last + 1]) + len(gap) * (last - first)
            left = (span - len(label)) // 2
            line += " " * left + style(Cell(label, bold=True), label) + " " * (span - len(label) - left) + gap
            column = last + 1
        lines.append(line.rstrip())
    for index, row in enumerate(cells):
        texts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - len(cell.text))
            styled = style(Cell(cell.text, cell.fg, cell.bold or index == 0, cell.dim), cell.text)
            texts.append(styled + pad if align[i] == "l" else pad + styled)
        lines.append((indent + gap.join(texts)).rstrip())
    return lines


def _title(text: str, color: bool) -> str:
    return click.style(text, bold=True, underline=True) if color else text


def _tally_cells(tally: Tally, bold: bool = False) -> list[Cell | str]:
    return [
        Cell(str(tally.terminal), "red" if tally.terminal else None, bold),
        Cell(str(tally.recovered), "yellow" if tally.recovered else None, bold),
        Cell(str(tally.total), None, bold),
        Cell(str(tally.runs_terminal), "red" if tally.runs_terminal else None, bold),
        Cell(str(tally.runs_recovered), "yellow" if tally.runs_recovered else None, bold),
        Cell(str(tally.runs), None, bold),
    ]


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def outcomes_lines(summary: Summary, color: bool) -> list[str]:
    rows: list[Row] = []
    for outcome, runs in summary.outcomes.items():
        score = summary.mean_failure_score.get(outcome)
        rows.append(
            [
                Cell(outcome, OUTCOME_COLOURS[outcome]),
                str(runs),
                _percent(runs, summary.runs),
                f"{score:.2f}" if score is not None else "-",
            ]
        )
    rows.append([Cell("all", bold=True), Cell(str(summary.runs), bold=True), _percent(summary.runs, summary.runs), ""])
    header = ["outcome", "runs", "share", "mean failure score"]
    return [_title("Run outcomes", color), *table(header, rows, align="lrrr", color=color)]


def modes_lines(summary: Summary, color: bool) -> list[str]:
    f = summary.failures
    title = (
        f"Failure modes: {f.total} failure{'s' if f.total != 1 else ''}"
        f" ({f.terminal} terminal, {f.recovered} recovered) in {f.runs} run{'s' if f.runs != 1 else ''}"
    )
    lines = [_title(title, color)]
    if not summary.categories:
        return [*lines, "  no failures"]
    rows: list[Row] = []
    for category in summary.categories:
        rows.append([Cell(category.category, bold=True), *_tally_cells(category.tally, bold=True)])
        rows.extend([Cell("  " + mode.mode), *_tally_cells(mode.tally)] for mode in category.modes)
    rows.append([Cell("all", bold=True), *_tally_cells(f, bold=True)])
    header = ["category / mode", "terminal", "recovered", "total", "terminal", "recovered", "any"]
    groups = [("failures", 1, 3), ("runs affected", 4, 6)]
    lines.extend(table(header, rows, align="lrrrrrr", color=color, groups=groups))
    return lines


def _traces_lines(title: str, items: Sequence[tuple[str, Sequence[TraceRef]]], links: TraceLinks) -> list[str]:
    """A heading, then for each item its label and the first of its traces."""
    lines = [title]
    for label, refs in items:
        lines.append(f"  {label}")
        lines.extend(links.text_lines(refs))
    return lines


def _mode_label(mode: ModeCount) -> str:
    runs = mode.tally.runs
    return f"{mode.category}.{mode.mode} ({runs} run{'s' if runs != 1 else ''})"


def mode_traces_lines(summary: Summary, links: TraceLinks) -> list[str]:
    if not summary.modes:
        return []
    title = "Traces by failure mode (runs with a terminal one first)"
    return _traces_lines(title, [(_mode_label(m), m.traces) for m in summary.modes], links)


def critiques_lines(summary: Summary, color: bool, width: int = CRITIQUE_WIDTH) -> list[str]:
    shown = len(summary.critiques)
    title = f"Most frequent critiques ({shown} of {summary.distinct_critiques} distinct)"
    if not summary.distinct_critiques:
        return [_title("Most frequent critiques", color), "  none"]
    if not summary.critiques:
        return [_title(title, color)]
    rows: list[Row] = []
    for number, critique in enumerate(summary.critiques, start=1):
        modes = critique.modes[0] + (f" +{len(critique.modes) - 1}" if len(critique.modes) > 1 else "")
        rows.append(
            [
                f"#{number}",
                str(critique.count),
                str(critique.runs),
                Cell(str(critique.terminal), "red" if critique.terminal else None),
                modes,
                _clip(critique.example, width),
            ]
        )
    header = ["#", "count", "runs", "terminal", "mode", "critique (one example)"]
    return [_title(title, color), *table(header, rows, align="rrrrll", color=color)]


def critique_traces_lines(summary: Summary, links: TraceLinks, width: int = CRITIQUE_WIDTH) -> list[str]:
    """Each critique shown in the table, in full (wrapped), with the traces it was said about."""
    if not summary.critiques:
        return []
    lines = ["Critiques in full, with their traces"]
    for number, critique in enumerate(summary.critiques, start=1):
        lines.extend(
            textwrap.wrap(
                critique.example,
                width,
                initial_indent=f"  #{number:<3} ",
                subsequent_indent=" " * 7,
                break_long_words=True,
            )
            or [f"  #{number}"]
        )
        lines.extend(links.text_lines(critique.traces, indent=" " * 7))
    return lines


def files_lines(summary: Summary, color: bool) -> list[str]:
    if not summary.files:
        return []
    rows: list[Row] = [
        [
            fc.file,
            str(fc.runs),
            *(Cell(str(n), OUTCOME_COLOURS[o] if n else None) for o, n in fc.outcomes.items()),
            _percent(fc.outcomes["terminal"], fc.runs),
            str(fc.failures),
        ]
        for fc in summary.files
    ]
    header = ["source file", "runs", "success", "recovered", "terminal", "terminal %", "failures"]
    return [_title("Runs by source file", color), *table(header, rows, align="lrrrrrr", color=color)]


def _bucket_width(max_step: int, distinct: int) -> int:
    if distinct <= 12:
        return 1
    raw = (max_step + 1) / 12
    for width in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if width >= raw:
            return width
    return math.ceil(raw)


@dataclass(frozen=True)
class StepBucket:
    """Runs whose root cause is at a step in ``[first, last]``, with the traces."""

    label: str
    first: int
    last: int
    runs: int
    traces: tuple[TraceRef, ...]


def root_cause_buckets(
    steps: dict[int, int], traces: dict[int, tuple[TraceRef, ...]] | None = None
) -> list[StepBucket]:
    """Runs by the step of their root cause, in buckets of a round width when there are many steps; ``traces``
    (step -> runs) gives each bucket its runs.

    >>> [(b.label, b.runs) for b in root_cause_buckets({2: 1, 5: 3})]
    [('2', 1), ('5', 3)]
    >>> [(b.label, b.runs) for b in root_cause_buckets({s: 1 for s in range(0, 40, 3)})[:2]]
    [('0-4', 2), ('5-9', 2)]
    """
    if not steps:
        return []
    traces = traces or {}
    width = _bucket_width(max(steps), len(steps))
    ranges = (
        [(step, step) for step in sorted(steps)]
        if width == 1
        else [(b * width, b * width + width - 1) for b in range(min(steps) // width, max(steps) // width + 1)]
    )
    buckets = []
    for first, last in ranges:
        inside = [step for step in sorted(steps) if first <= step <= last]
        label = str(first) if first == last else f"{first}-{last}"
        refs = tuple(dict.fromkeys(r for step in inside for r in traces.get(step, ())))
        buckets.append(StepBucket(label, first, last, sum(steps[step] for step in inside), refs))
    return buckets


def root_cause_lines(summary: Summary, color: bool, links: TraceLinks | None = None) -> list[str]:
    located = sum(summary.root_cause_steps.values())
    if not located:
        return []
    median = summary.root_cause_median()
    title = (
        f"Root cause: step of the earliest terminal failure, in {located} run{'s' if located != 1 else ''}"
        f" (median step {median:g})"
    )
    buckets = root_cause_buckets(summary.root_cause_steps, summary.root_cause_traces)
    most = max(b.runs for b in buckets)
    rows: list[Row] = [
        [b.label, str(b.runs), Cell("█" * max(1 if b.runs else 0, round(BAR_WIDTH * b.runs / most)), "red")]
        for b in buckets
    ]
    lines = [_title(title, color), *table(["step", "runs", ""], rows, align="lrl", color=color)]
    if summary.terminal_without_root_cause:
        n = summary.terminal_without_root_cause
        lines.append(f"  ({n} terminal run{'s' if n != 1 else ''} without a terminal failure at a known step)")
    if links is not None:
        items = [(f"step {b.label} ({b.runs} run{'s' if b.runs != 1 else ''})", b.traces) for b in buckets if b.runs]
        lines += ["", *_traces_lines("Traces by root-cause step", items, links)]
    return lines


def _top_modes(modes: Sequence[ModeCount]) -> str:
    return ", ".join(f"{m.category}.{m.mode} {m.tally.total}" for m in modes) or "-"


def agent_name(agent: str | None) -> str:
    """An agent as the report names it; runs without a name are ``(unnamed)``."""
    return agent if agent is not None else "(unnamed)"


def agents_lines(summary: Summary, color: bool, links: TraceLinks) -> list[str]:
    """Runs per agent: outcomes, terminal share, failures and the top modes; then each agent's terminal traces."""
    if not summary.agents:
        return []
    rows: list[Row] = [
        [
            agent_name(a.agent),
            str(a.runs),
            *(Cell(str(n), OUTCOME_COLOURS[o] if n else None) for o, n in a.outcomes.items()),
            _percent(a.outcomes["terminal"], a.runs),
            str(a.failures.total),
            _top_modes(a.top_modes),
        ]
        for a in summary.agents
    ]
    header = ["agent", "runs", "success", "recovered", "terminal", "terminal %", "failures", "top failure modes"]
    lines = [_title("Runs by agent", color), *table(header, rows, align="lrrrrrrl", color=color)]
    items = [(f"{agent_name(a.agent)}: {a.outcomes['terminal']} terminal", a.terminal_traces) for a in summary.agents]
    if any(refs for _, refs in items):
        lines += ["", *_traces_lines("Terminal traces by agent", [i for i in items if i[1]], links)]
    return lines


def suspicions_lines(summary: Summary, color: bool, links: TraceLinks, width: int = CRITIQUE_WIDTH) -> list[str]:
    """Suspicions by mode, apart: findings that decided no outcome and are not counted as failures above."""
    if not summary.suspicions:
        return []
    n = sum(s.count for s in summary.suspicions)
    title = (
        f"Suspicions, not failures: {n} finding{'s' if n != 1 else ''} in {summary.suspected_runs} "
        f"run{'s' if summary.suspected_runs != 1 else ''} ({summary.suspected_successes} judged success) "
        "that decided no outcome"
    )
    rows: list[Row] = [
        [f"{s.category}.{s.mode}", str(s.count), str(s.runs), _clip(s.example, width)] for s in summary.suspicions
    ]
    lines = [
        _title(title, color),
        *table(["mode", "findings", "runs", "critique (one example)"], rows, align="lrrl", color=color),
    ]
    items = [
        (f"{s.category}.{s.mode} ({s.runs} run{'s' if s.runs != 1 else ''})", s.traces) for s in summary.suspicions
    ]
    return [*lines, "", *_traces_lines("Traces by suspicion", items, links)]


def timeline_lines(timeline: Timeline | None, color: bool) -> list[str]:
    """Failures per time bucket: runs, terminal runs, failures terminal / recovered as a bar, the top modes."""
    if timeline is None:
        return []
    most = max((b.failures for b in timeline.buckets), default=0)
    rows: list[Row] = []
    for b in timeline.buckets:
        scale = BAR_WIDTH / most if most else 0.0
        bar_t = "█" * max(1 if b.terminal else 0, round(b.terminal * scale))
        bar_r = "▒" * max(1 if b.recovered else 0, round(b.recovered * scale))
        modes = ", ".join(f"{m} {t}/{r}" for m, t, r in b.modes[:3]) + (
            f" +{len(b.modes) - 3}" if len(b.modes) > 3 else ""
        )
        rows.append(
            [
                timeline.label(b),
                str(b.runs),
                Cell(str(b.terminal_runs), "red" if b.terminal_runs else None),
                Cell(str(b.terminal), "red" if b.terminal else None),
                Cell(str(b.recovered), "yellow" if b.recovered else None),
                # one cell: the glyphs tell terminal from recovered without colour
                Cell(bar_t + bar_r, "red" if b.terminal else "yellow"),
                modes or "-",
            ]
        )
    header = [
        "from (UTC)",
        "runs",
        "terminal runs",
        "terminal",
        "recovered",
        "failures",
        "top modes (terminal/recovered)",
    ]
    title = f"Failures over time, per {timeline.width_text()} (█ terminal, ▒ recovered)"
    lines = table(header, rows, align="lrrrrll", color=color)
    return [_title(title, color), *lines]


def judges_lines(summary: Summary, color: bool, links: TraceLinks) -> list[str]:
    """What each evaluation model found (its findings are among the failures above, marked here)."""
    if not summary.judges:
        return []
    rows: list[Row] = [
        [
            j.evaluator,
            str(j.failures),
            str(j.runs),
            str(j.terminal),
            str(j.errors),
            ", ".join(f"{mode} {n}" for mode, n in j.modes[:4]) or "-",
        ]
        for j in summary.judges
    ]
    lines = [
        _title("From the judge: findings of evaluation models (among the failures and suspicions above)", color),
        *table(
            ["judge", "findings", "runs", "terminal runs", "runs unanswered", "modes"],
            rows,
            align="lrrrrl",
            color=color,
        ),
    ]
    items = [
        (f"{j.evaluator} ({j.runs} run{'s' if j.runs != 1 else ''})", j.traces) for j in summary.judges if j.traces
    ]
    return [*lines, "", *_traces_lines("Traces the judge found failures in", items, links)] if items else lines


def render_text(
    summary: Summary, *, color: bool = False, width: int = CRITIQUE_WIDTH, links: TraceLinks | None = None
) -> str:
    """The whole report as text; ``color`` adds ANSI styles (give it only to a terminal)."""
    links = links or TraceLinks()
    files = ", ".join(summary.results_files) or "no file"
    head = f"{summary.runs} run{'s' if summary.runs != 1 else ''} evaluated, from {files}"
    sections = [
        [click.style(head, bold=True) if color else head],
        outcomes_lines(summary, color),
        modes_lines(summary, color),
        mode_traces_lines(summary, links),
        agents_lines(summary, color, links),
        timeline_lines(summary.timeline, color),
        critiques_lines(summary, color, width),
        critique_traces_lines(summary, links, width),
        suspicions_lines(summary, color, links, width),
        judges_lines(summary, color, links),
        files_lines(summary, color),
        root_cause_lines(summary, color, links),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"
