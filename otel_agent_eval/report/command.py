"""``otel-agent-eval report RESULTS... | --store DIR [--html FILE] [--top N] [--traces N] [--trace-url TEMPLATE]``:
the evaluation's report, as text and HTML.

Exit status: 0 on success, 2 on bad input (a results file that cannot be read, or a line that is not a run:
the message names the file and the line; a store that is not one; a ``--trace-url`` without ``{trace_id}``),
1 when ``--html`` is asked for without plotly installed.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from ..errors import InputError
from ..output import BadInput, terminal_safe, write_atomically
from ..processor.command import _open_store
from .load import RunResult, load_results, runs_from_store
from .summary import summarize
from .text import render_text
from .traces import TRACE_ID_FIELD, TraceLinks


def _colour(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def check_trace_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--trace-url``: an http(s) URL with ``{trace_id}`` in it (a usage error, exit status 2, otherwise). Only
    http(s): the template becomes the href of every trace id on the page, and a ``javascript:`` one would run."""
    if value is None:
        return None
    if TRACE_ID_FIELD not in value:
        raise click.BadParameter(
            f"{value!r} has no {TRACE_ID_FIELD} (e.g. 'http://jaeger:16686/trace/{TRACE_ID_FIELD}')", ctx, param
        )
    parts = urlsplit(value.replace(TRACE_ID_FIELD, "0"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL", ctx, param)
    return value


def _store_runs(data_dir: Path) -> tuple[list[RunResult], str]:
    """The runs in a processor's store, opened as ``traces`` and ``show`` open it."""
    path = str(data_dir / "agent-eval.sqlite")
    try:
        store = _open_store(data_dir)
        try:
            rows = list(store.evaluated_results())
        finally:
            store.close()
    except (sqlite3.Error, ValueError) as exc:  # not a SQLite file, not a store, a damaged row
        raise InputError(f"cannot read the trace store: {exc}", file=path) from None
    return runs_from_store(rows, file=path), path


@click.command("report")
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--store",
    "--data-dir",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report on the traces in a processor's embedded store (the `serve --data-dir` directory) instead of "
    "results files, with the failures over time.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the report as one self-contained HTML page with charts (needs the 'report' extra).",
)
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0), help="Critiques shown.")
@click.option(
    "--traces",
    "traces_shown",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Traces listed per mode, critique or step before '+k more' (in HTML the rest opens on a click).",
)
@click.option(
    "--trace-url",
    default=None,
    metavar="TEMPLATE",
    callback=check_trace_url,
    help="Link every trace id to a trace UI: an http(s) URL with {trace_id} in it, "
    "e.g. 'http://jaeger:16686/trace/{trace_id}'. The text report prints the URLs.",
)
def report(
    results: tuple[str, ...],
    data_dir: Path | None,
    html_file: str | None,
    top: int,
    traces_shown: int,
    trace_url: str | None,
) -> None:
    """Report on evaluated runs (the evaluator's results.jsonl, or a processor's store): failure modes terminal /
    recovered by category and mode, run outcomes, agents, the most frequent critiques, suspicions apart, and,
    from a store, failures over time; each row lists the traces behind it.

    The text goes to stdout; --html FILE also writes the page, with the charts.
    """
    if bool(results) == (data_dir is not None):
        raise BadInput("give results files, or --store, but not both")
    try:
        if data_dir is not None:
            runs, store_file = _store_runs(data_dir)
            sources: tuple[str, ...] = (store_file,)
            if not runs:  # said, not an empty report that looks like a quiet day
                click.echo(
                    f"{store_file}: no evaluated traces yet (serve keeps each trace's results here once it is "
                    "evaluated)",
                    err=True,
                )
        else:
            runs = load_results(results)
            sources = results
    except InputError as exc:
        raise BadInput(str(exc)) from None
    summary = summarize(runs, top=top, results_files=sources)
    links = TraceLinks(trace_url, shown=traces_shown)
    page = None
    if html_file is not None:
        from .html import MissingPlotly, render_html

        try:
            page = render_html(summary, links=links)
        except MissingPlotly as exc:
            raise click.ClickException(str(exc)) from None
    out = sys.stdout
    click.echo(terminal_safe(render_text(summary, color=_colour(out), links=links)), nl=False, color=True)
    if html_file is not None and page is not None:
        write_atomically(html_file, [page])
        click.echo(f"wrote the HTML report ({summary.runs} runs) -> {html_file}", err=True)
