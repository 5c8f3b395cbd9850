"""The report as text for the terminal: aligned tables, coloured (click.style) only when asked.

The main table is the study's chart as numbers: failure modes grouped by category, each split terminal /
recovered, counted as findings and as runs affected, most frequent first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import click

from .summary import Summary, Tally

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


def critiques_lines(summary: Summary, color: bool, width: int = CRITIQUE_WIDTH) -> list[str]:
    shown = len(summary.critiques)
    title = f"Most frequent critiques ({shown} of {summary.distinct_critiques} distinct)"
    if not summary.distinct_critiques:
        return [_title("Most frequent critiques", color), "  none"]
    if not summary.critiques:
        return [_title(title, color)]
    rows: list[Row] = []
    for critique in summary.critiques:
        modes = critique.modes[0] + (f" +{len(critique.modes) - 1}" if len(critique.modes) > 1 else "")
        rows.append(
            [
                str(critique.count),
                str(critique.runs),
                Cell(str(critique.terminal), "red" if critique.terminal else None),
                modes,
                _clip(critique.example, width),
            ]
        )
    header = ["count", "runs", "terminal", "mode", "critique (one example)"]
    return [_title(title, color), *table(header, rows, align="rrrll", color=color)]


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


def root_cause_buckets(steps: dict[int, int]) -> list[tuple[str, int]]:
    """Runs by the step of their root cause, in buckets of a round width when there are many steps.

    >>> root_cause_buckets({2: 1, 5: 3})
    [('2', 1), ('5', 3)]
    >>> root_cause_buckets({s: 1 for s in range(0, 40, 3)})[:2]
    [('0-4', 2), ('5-9', 2)]
    """
    if not steps:
        return []
    width = _bucket_width(max(steps), len(steps))
    if width == 1:
        return [(str(step), n) for step, n in sorted(steps.items())]
    buckets: dict[int, int] = {}
    for step, n in steps.items():
        buckets[step // width] = buckets.get(step // width, 0) + n
    first, last = min(buckets), max(buckets)
    return [(f"{b * width}-{b * width + width - 1}", buckets.get(b, 0)) for b in range(first, last + 1)]


def root_cause_lines(summary: Summary, color: bool) -> list[str]:
    located = sum(summary.root_cause_steps.values())
    if not located:
        return []
    median = summary.root_cause_median()
    title = (
        f"Root cause: step of the earliest terminal failure, in {located} run{'s' if located != 1 else ''}"
        f" (median step {median:g})"
    )
    buckets = root_cause_buckets(summary.root_cause_steps)
    most = max(n for _, n in buckets)
    rows: list[Row] = [
        [label, str(n), Cell("█" * max(1 if n else 0, round(BAR_WIDTH * n / most)), "red")] for label, n in buckets
    ]
    lines = [_title(title, color), *table(["step", "runs", ""], rows, align="lrl", color=color)]
    if summary.terminal_without_root_cause:
        n = summary.terminal_without_root_cause
        lines.append(f"  ({n} terminal run{'s' if n != 1 else ''} without a terminal failure at a known step)")
    return lines


def render_text(summary: Summary, *, color: bool = False, width: int = CRITIQUE_WIDTH) -> str:
    """The whole report as text; ``color`` adds ANSI styles (give it only to a terminal)."""
    files = ", ".join(summary.results_files) or "no file"
    head = f"{summary.runs} run{'s' if summary.runs != 1 else ''} evaluated, from {files}"
    sections = [
        [click.style(head, bold=True) if color else head],
        outcomes_lines(summary, color),
        modes_lines(summary, color),
        critiques_lines(summary, color, width),
        files_lines(summary, color),
        root_cause_lines(summary, color),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"
