"""The report as one self-contained HTML page: plotly charts with plotly.js inlined once, and plain tables.

Nothing is fetched when the page is opened: no external script, stylesheet, font or image. Every text that
comes from the results (critiques, modes, file names) is escaped, in the tables and in the charts (plotly
reads a few HTML tags in its labels; escaped, they show as written). The charts need the ``report`` extra
(plotly); without it :func:`render_html` raises :class:`MissingPlotly`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from .summary import Summary, Tally
from .text import root_cause_buckets

COLOURS = {"success": "#2e9d4f", "recovered": "#f0a202", "terminal": "#d1373b"}
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
INSTALL_HINT = "pip install 'otel-agent-eval[report]'"


class MissingPlotly(RuntimeError):
    """plotly, which draws the charts, is not installed."""

    def __init__(self) -> None:
        super().__init__(f"the HTML report needs plotly, from the 'report' extra: {INSTALL_HINT}")


def _plotly() -> tuple[Any, Any]:
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise MissingPlotly() from None
    return go, get_plotlyjs


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _label(text: str) -> str:
    """Text for a plotly label: its pseudo-HTML (<b>, <br>, <a>) and entities neutralised."""
    return html.escape(text, quote=False)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


# ---------------------------------------------------------------------------------------------------- charts


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "height": height,
        "margin": {"l": 10, "r": 20, "t": 30, "b": 40},
        "font": {"family": FONT, "size": 13, "color": "#222"},
        "hoverlabel": {"font": {"family": FONT}},
    }
    layout.update(extra)
    return layout


def _integer_axis(largest: int) -> dict[str, Any]:
    """Axis settings for counts: whole-number ticks, at most about eight of them."""
    step = next((s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000) if largest / s <= 8), None)
    return {"tick0": 0, "dtick": step, "tickformat": "d"} if step else {"tickformat": "d"}


def _div(fig: Any, div_id: str) -> str:
    config = {"displaylogo": False, "responsive": True, "displayModeBar": False}
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config=config, div_id=div_id))


def modes_chart(go: Any, summary: Summary) -> str:
    """The study's chart: failure modes as horizontal bars, terminal and recovered stacked, grouped by category."""
    categories = [_label(m.category) for m in summary.modes]
    modes = [_label(m.mode) for m in summary.modes]
    fig = go.Figure()
    for outcome in ("terminal", "recovered"):
        values = [getattr(m.tally, outcome) for m in summary.modes]
        runs = [getattr(m.tally, f"runs_{outcome}") for m in summary.modes]
        fig.add_trace(
            go.Bar(
                name=outcome,
                orientation="h",
                y=[categories, modes],
                x=values,
                customdata=runs,
                marker={"color": COLOURS[outcome]},
                text=[str(v) if v else "" for v in values],
                textposition="inside",
                insidetextanchor="middle",
                hovertemplate=f"%{{y}}<br>{outcome}: %{{x}} failures in %{{customdata}} runs<extra></extra>",
            )
        )
    fig.update_layout(
        _layout(
            max(260, 90 + 30 * len(summary.modes) + 12 * len(summary.categories)),
            barmode="stack",
            bargap=0.25,
            legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "traceorder": "normal"},
            xaxis={
                "title": {"text": "failures"},
                "rangemode": "tozero",
                "gridcolor": "#e6e6e6",
                **_integer_axis(max((m.tally.total for m in summary.modes), default=0)),
            },
            yaxis={"autorange": "reversed", "tickfont": {"size": 13}},
        )
    )
    return _div(fig, "chart-modes")


def outcomes_chart(go: Any, summary: Summary) -> str:
    labels = list(summary.outcomes)
    fig = go.Figure(
        go.Pie(
            labels=labels,
            values=[summary.outcomes[o] for o in labels],
            hole=0.55,
            sort=False,
            direction="clockwise",
            marker={"colors": [COLOURS[o] for o in labels], "line": {"color": "#fff", "width": 2}},
            textinfo="label+percent",
            hovertemplate="%{label}: %{value} runs (%{percent})<extra></extra>",
        )
    )
    fig.update_layout(
        _layout(
            320,
            showlegend=False,
            margin={"l": 20, "r": 20, "t": 20, "b": 20},
            annotations=[
                {"text": f"<b>{summary.runs}</b><br>runs", "showarrow": False, "font": {"size": 18}, "x": 0.5, "y": 0.5}
            ],
        )
    )
    return _div(fig, "chart-outcomes")


def critiques_chart(go: Any, summary: Summary) -> str:
    """The most frequent critiques as a plotly table (the same numbers are in a plain table for no-JS readers)."""
    rows = summary.critiques
    values = [
        [str(i) for i in range(1, len(rows) + 1)],
        [str(c.count) for c in rows],
        [str(c.runs) for c in rows],
        [str(c.terminal) for c in rows],
        ["<br>".join(_label(m) for m in c.modes) for c in rows],
        [_label(c.example) for c in rows],
    ]
    header = ["#", "count", "runs", "terminal", "mode", "critique (one example of the group)"]
    fig = go.Figure(
        go.Table(
            columnwidth=[30, 52, 46, 74, 250, 580],
            header={
                "values": [f"<b>{h}</b>" for h in header],
                "align": ["right", "right", "right", "right", "left", "left"],
                "fill": {"color": "#f2f2f2"},
                "line": {"color": "#d9d9d9"},
                "height": 30,
            },
            cells={
                "values": values,
                "align": ["right", "right", "right", "right", "left", "left"],
                "line": {"color": "#e6e6e6"},
                "fill": {"color": "#ffffff"},
                "height": 28,
            },
        )
    )
    # rows grow by a line for each ~80 characters of critique (the column is ~600 px wide) or extra mode
    height = 40 + sum(28 + 18 * max(-(-len(c.example) // 80) - 1, len(c.modes) - 1) for c in rows)
    fig.update_layout(_layout(height, margin={"l": 0, "r": 0, "t": 0, "b": 0}))
    return _div(fig, "chart-critiques")


def root_cause_chart(go: Any, summary: Summary) -> str:
    buckets = root_cause_buckets(summary.root_cause_steps)
    fig = go.Figure(
        go.Bar(
            x=[label for label, _ in buckets],
            y=[n for _, n in buckets],
            marker={"color": COLOURS["terminal"]},
            text=[str(n) if n else "" for _, n in buckets],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="step %{x}: %{y} runs<extra></extra>",
        )
    )
    fig.update_layout(
        _layout(
            300,
            xaxis={"title": {"text": "step of the earliest terminal failure"}, "type": "category"},
            yaxis={
                "title": {"text": "runs"},
                "rangemode": "tozero",
                "gridcolor": "#e6e6e6",
                **_integer_axis(max((n for _, n in buckets), default=0)),
            },
        )
    )
    return _div(fig, "chart-root-cause")


# ---------------------------------------------------------------------------------------------------- tables


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, numeric_from: int = 1, cls: str = "") -> str:
    """A table of already escaped cells; columns from ``numeric_from`` on are right-aligned numbers."""

    def cells(row: Sequence[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="num">{c}</{tag}>' if i >= numeric_from else f"<{tag}>{c}</{tag}>" for i, c in enumerate(row)
        )

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{cells(header, "th")}</tr></thead><tbody>{body}</tbody></table>'


def _tally(t: Tally) -> list[str]:
    return [str(t.terminal), str(t.recovered), str(t.total), str(t.runs_terminal), str(t.runs_recovered), str(t.runs)]


def modes_table(summary: Summary) -> str:
    rows = []
    for category in summary.categories:
        rows.append(
            f'<tr class="group"><th scope="rowgroup">{_e(category.category)}</th>'
            + "".join(f'<td class="num">{v}</td>' for v in _tally(category.tally))
            + "</tr>"
        )
        for mode in category.modes:
            rows.append(
                f'<tr><td class="mode">{_e(mode.mode)}</td>'
                + "".join(f'<td class="num">{v}</td>' for v in _tally(mode.tally))
                + "</tr>"
            )
    rows.append(
        '<tr class="total"><th scope="row">all</th>'
        + "".join(f'<td class="num">{v}</td>' for v in _tally(summary.failures))
        + "</tr>"
    )
    return (
        '<table class="modes"><thead>'
        '<tr><th rowspan="2">category / mode</th><th colspan="3" class="span">failures</th>'
        '<th colspan="3" class="span">runs affected</th></tr>'
        '<tr><th class="num terminal">terminal</th><th class="num recovered">recovered</th><th class="num">total</th>'
        '<th class="num terminal">terminal</th><th class="num recovered">recovered</th><th class="num">any</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def outcomes_table(summary: Summary) -> str:
    rows = []
    for outcome, runs in summary.outcomes.items():
        score = summary.mean_failure_score.get(outcome)
        rows.append(
            [
                f'<span class="dot {outcome}"></span>{outcome}',
                str(runs),
                _percent(runs, summary.runs),
                f"{score:.2f}" if score is not None else "–",
            ]
        )
    rows.append(["<b>all</b>", f"<b>{summary.runs}</b>", _percent(summary.runs, summary.runs), ""])
    return _table(["outcome", "runs", "share", "mean failure score"], rows)


def files_table(summary: Summary) -> str:
    rows = [
        [
            f'<span class="path">{_e(fc.file)}</span>',
            str(fc.runs),
            *(str(n) for n in fc.outcomes.values()),
            _percent(fc.outcomes["terminal"], fc.runs),
            str(fc.failures),
        ]
        for fc in summary.files
    ]
    return _table(["source file", "runs", "success", "recovered", "terminal", "terminal %", "failures"], rows)


def critiques_table(summary: Summary) -> str:
    rows = [
        [
            str(i),
            str(c.count),
            str(c.runs),
            str(c.terminal),
            "<br>".join(f"<code>{_e(m)}</code>" for m in c.modes),
            f'<span class="critique">{_e(c.example)}</span>',
        ]
        for i, c in enumerate(summary.critiques, start=1)
    ]
    return _table(
        ["#", "count", "runs", "terminal", "mode", "critique (one example of the group)"],
        rows,
        numeric_from=0,
        cls="critiques",
    )


def root_cause_table(summary: Summary) -> str:
    return _table(["step", "runs"], ([_e(label), str(n)] for label, n in root_cause_buckets(summary.root_cause_steps)))


# ---------------------------------------------------------------------------------------------------- page

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #222; font: 15px/1.45 %(font)s; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 6px; }
h3 { font-size: 15px; margin: 18px 0 6px; color: #444; }
p.sub, p.note { margin: 0 0 12px; color: #555; }
p.note { font-size: 13.5px; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 20px 22px; margin: 18px 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 18px 0; }
.card { flex: 1 1 150px; background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 12px 16px;
        border-top: 4px solid #8a94a6; }
.card .value { font-size: 26px; font-weight: 650; }
.card .label { color: #555; font-size: 13px; }
.card.success { border-top-color: %(success)s; } .card.recovered { border-top-color: %(recovered)s; }
.card.terminal { border-top-color: %(terminal)s; }
.split { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 24px; align-items: center; }
.split.wide { grid-template-columns: minmax(0, 3fr) minmax(0, 1fr); }
table { border-collapse: collapse; margin: 6px 0; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
thead th { background: #f6f7f9; border-bottom: 1px solid #cfd4da; font-weight: 600; }
th.span { text-align: center; border-bottom: 1px solid #cfd4da; }
.num { text-align: right; }
tr.group th, tr.group td { background: #fafbfc; font-weight: 600; }
tr.total th, tr.total td { font-weight: 700; border-top: 2px solid #cfd4da; }
td.mode { padding-left: 26px; }
th.terminal { color: %(terminal)s; } th.recovered { color: #b07600; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%%; margin-right: 7px; }
.dot.success { background: %(success)s; } .dot.recovered { background: %(recovered)s; }
.dot.terminal { background: %(terminal)s; }
.path, code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
table.critiques { width: 100%%; }
.critique { white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin-top: 10px; } summary { cursor: pointer; color: #444; }
.chart { width: 100%%; }
footer { color: #777; font-size: 12.5px; margin-top: 24px; }
""" % dict(font=FONT, **COLOURS)  # noqa: UP031 -- the CSS is full of braces


def _cards(summary: Summary) -> str:
    cards = [("runs", str(summary.runs), "runs evaluated")]
    cards += [(o, str(n), f"{o} ({_percent(n, summary.runs)})") for o, n in summary.outcomes.items()]
    f = summary.failures
    cards.append(("failures", str(f.total), f"failures ({f.terminal} terminal, {f.recovered} recovered)"))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card {cls}"><div class="value">{value}</div><div class="label">{_e(label)}</div></div>'
            for cls, value, label in cards
        )
        + "</div>"
    )


def render_html(summary: Summary, *, title: str = "Agent failure report") -> str:
    """The whole report as one HTML page, plotly.js inlined once; raises MissingPlotly without plotly."""
    go, get_plotlyjs = _plotly()
    sources = ", ".join(f'<span class="path">{_e(f)}</span>' for f in summary.results_files) or "no file"
    f = summary.failures
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>",
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
        f"<script>{get_plotlyjs()}</script>",
        "</head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{summary.runs} evaluated run{"s" if summary.runs != 1 else ""}, from {sources}</p>',
        _cards(summary),
        '<section id="modes"><h2>Failure modes: terminal and recovered</h2>',
        f'<p class="note">{f.total} failures in {f.runs} runs, by category and mode, most frequent first. '
        "A failure is <b>terminal</b> when the run fails because of it, <b>recovered</b> when a later step "
        "corrected it.</p>",
    ]
    if summary.modes:
        parts += [
            f'<div class="chart">{modes_chart(go, summary)}</div>',
            "<h3>The same numbers</h3>",
            '<p class="note">Runs affected: runs with at least one such failure (a run can have both a '
            "terminal and a recovered one).</p>",
            modes_table(summary),
        ]
    else:
        parts.append("<p>No failures.</p>")
    parts += [
        "</section>",
        '<section id="outcomes"><h2>Run outcomes</h2>',
        f'<div class="split"><div class="chart">{outcomes_chart(go, summary)}</div><div>{outcomes_table(summary)}</div>'
        "</div>",
        "<h3>By source file</h3>",
        files_table(summary),
        "</section>",
        '<section id="critiques"><h2>Most frequent critiques</h2>',
    ]
    if summary.critiques:
        parts += [
            f'<p class="note">The top {len(summary.critiques)} of {summary.distinct_critiques} distinct critiques. '
            "Critiques that differ only in numbers and quoted values are counted together; one of them is shown."
            "</p>",
            f'<div class="chart js-only">{critiques_chart(go, summary)}</div>',
            f"<noscript>{critiques_table(summary)}</noscript>",
        ]
    elif summary.distinct_critiques:
        parts.append(f'<p class="note">{summary.distinct_critiques} distinct critiques; none shown.</p>')
    else:
        parts.append("<p>No critiques.</p>")
    parts.append("</section>")
    if summary.root_cause_steps:
        located = sum(summary.root_cause_steps.values())
        parts += [
            '<section id="root-cause"><h2>Root cause: where runs go wrong</h2>',
            f'<p class="note">Step of the earliest terminal failure in each of the {located} runs that have one '
            f"(median step {summary.root_cause_median():g}). An in-loop check has to fire there.</p>",
            f'<div class="split wide"><div class="chart">{root_cause_chart(go, summary)}</div>'
            f"<div>{root_cause_table(summary)}</div></div>",
            "</section>",
        ]
    parts += [
        "<footer>Generated by otel-agent-eval report. Self-contained: the charts are drawn by plotly.js, "
        "inlined in this page; nothing is fetched.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"
