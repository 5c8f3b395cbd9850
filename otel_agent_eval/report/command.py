"""``otel-agent-eval report RESULTS... [--html FILE] [--top N]``: the evaluation's report, as text and HTML.

Exit status: 0 on success, 2 on bad input (a results file that cannot be read, or a line that is not a run:
the message names the file and the line), 1 when ``--html`` is asked for without plotly installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import InputError
from ..output import BadInput, write_atomically
from ..processor.store import Store
from .load import load_results, parse_result
from .summary import summarize
from .text import render_text


def _colour(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


@click.command("report")
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report on the traces in a processor's embedded store (`serve --data-dir`) instead of results files.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the report as one self-contained HTML page with charts (needs the 'report' extra).",
)
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0), help="Critiques shown.")
def report(results: tuple[str, ...], data_dir: Path | None, html_file: str | None, top: int) -> None:
    """Report on evaluated runs (the evaluator's results.jsonl): failure modes terminal / recovered by
    category and mode, run outcomes, the most frequent critiques.

    The text goes to stdout; --html FILE also writes the page, with the charts.
    """
    if bool(results) == (data_dir is not None):
        raise BadInput("give results files, or --data-dir, but not both")
    try:
        if data_dir is not None:
            store_file = data_dir / "agent-eval.sqlite"
            if not store_file.exists():
                raise InputError(
                    "no trace store here (start `otel-agent-eval serve --data-dir` first)", file=str(store_file)
                )
            store = Store(store_file)
            runs = [parse_result(obj, file=str(store_file), line=i) for i, obj in enumerate(store.all_results(), 1)]
            store.close()
            sources: tuple[str, ...] = (str(store_file),)
        else:
            runs = load_results(results)
            sources = results
    except InputError as exc:
        raise BadInput(str(exc)) from None
    summary = summarize(runs, top=top, results_files=sources)
    page = None
    if html_file is not None:
        from .html import MissingPlotly, render_html

        try:
            page = render_html(summary)
        except MissingPlotly as exc:
            raise click.ClickException(str(exc)) from None
    out = sys.stdout
    click.echo(render_text(summary, color=_colour(out)), nl=False, color=True)
    if html_file is not None and page is not None:
        write_atomically(html_file, [page])
        click.echo(f"wrote the HTML report ({summary.runs} runs) -> {html_file}", err=True)
