"""The report as one self-contained HTML page: plotly charts with plotly.js inlined once, and plain tables.

Nothing is fetched when the page is opened: no external script, stylesheet, font or image; the only links are
to the page's own rows and, with ``--trace-url``, to the trace UI. Every text that comes from the results
(critiques, modes, agents, file names, trace ids) is escaped, in the tables and in the charts (plotly reads a few
HTML tags in its labels; escaped, they show as written). The charts need the ``report`` extra (plotly); without
it :func:`render_html` raises :class:`MissingPlotly`.

Operators go from a number to the traces: every mode, critique, suspicion, agent and root-cause row lists its
traces (:mod:`.traces`), and a click on a bar of the modes or root-cause chart scrolls to its row and opens the
list. Tables scroll sideways inside their section on a narrow screen rather than overflow it, and long text
wraps: nothing is cut.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from .summary import Summary, Tally
from .text import agent_name, root_cause_buckets
from .timeline import Timeline
from .traces import TraceLinks

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


def _nowrap(text: str) -> str:
    """Escaped text kept on one line (a date, a time, a step range: broken, they read as other values)."""
    return f'<span class="nowrap">{_e(text)}</span>'


def _path(path: str) -> str:
    """A file path, escaped, that may break after each ``/`` (a long path wraps at its folders, not mid-name)."""
    return _e(path).replace("/", "/<wbr>")


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


#: after a chart is drawn: a click on a bar goes to the row whose id is the bar's last customdata item
_JUMP_ON_CLICK = (
    "document.getElementById('{plot_id}').on('plotly_click', function (e) {"
    " var p = e.points && e.points[0]; if (!p) return;"
    " var d = p.customdata; reportJump(Array.isArray(d) ? d[d.length - 1] : d);"
    " });"
)

#: in the page's head: scroll to a row, open its list of traces, and flash it; keep each chart as wide as its box
_JUMP = (
    "function reportJump(id) { var row = document.getElementById(id); if (!row) return;"
    " var d = row.querySelector('details'); if (d) d.open = true;"
    " row.scrollIntoView({block: 'center'}); row.classList.add('hit');"
    " setTimeout(function () { row.classList.remove('hit'); }, 1600); }"
    # plotly's "responsive" follows window resizes only: a box that narrows without one (a scrollbar appearing as
    # the page grows) would leave its chart wider than the box
    " window.addEventListener('load', function () { if (!window.ResizeObserver) return;"
    " document.querySelectorAll('.chart').forEach(function (box) {"
    " var plot = box.querySelector('.js-plotly-plot'); if (!plot) return;"
    " new ResizeObserver(function () { Plotly.Plots.resize(plot); }).observe(box); }); });"
)


def _div(fig: Any, div_id: str, *, clickable: bool = False) -> str:
    config = {"displaylogo": False, "responsive": True, "displayModeBar": False}
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            config=config,
            div_id=div_id,
            post_script=_JUMP_ON_CLICK if clickable else None,
        )
    )


def mode_anchor(index: int) -> str:
    """The id of the modes table's row for ``summary.modes[index]`` (ids by position: nothing from the results)."""
    return f"mode-{index}"


def step_anchor(index: int) -> str:
    return f"step-{index}"


def modes_chart(go: Any, summary: Summary) -> str:
    """The study's chart: failure modes as horizontal bars, terminal and recovered stacked, grouped by category."""
    categories = [_label(m.category) for m in summary.modes]
    modes = [_label(m.mode) for m in summary.modes]
    fig = go.Figure()
    anchors = [mode_anchor(i) for i in range(len(summary.modes))]
    for outcome in ("terminal", "recovered"):
        values = [getattr(m.tally, outcome) for m in summary.modes]
        runs = [[getattr(m.tally, f"runs_{outcome}"), a] for m, a in zip(summary.modes, anchors, strict=True)]
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
                hovertemplate=f"%{{y}}<br>{outcome}: %{{x}} failures in %{{customdata[0]}} runs"
                "<br>click: the traces<extra></extra>",
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
    return _div(fig, "chart-modes", clickable=True)


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


def root_cause_chart(go: Any, summary: Summary) -> str:
    buckets = root_cause_buckets(summary.root_cause_steps)
    fig = go.Figure(
        go.Bar(
            x=[b.label for b in buckets],
            y=[b.runs for b in buckets],
            customdata=[step_anchor(i) for i in range(len(buckets))],
            marker={"color": COLOURS["terminal"]},
            text=[str(b.runs) if b.runs else "" for b in buckets],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="step %{x}: %{y} runs<br>click: the traces<extra></extra>",
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
                **_integer_axis(max((b.runs for b in buckets), default=0)),
            },
        )
    )
    return _div(fig, "chart-root-cause", clickable=True)


# ---------------------------------------------------------------------------------------------------- tables


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    align: str,
    cls: str = "",
    ids: Sequence[str] = (),
    stack: bool = False,
) -> str:
    """A table of already escaped cells, in a box that scrolls sideways when the table is wider than the page.
    ``align`` has an 'l' (text) or 'r' (a number) per column; ``ids`` names the rows (a chart's bar jumps to its
    row). ``stack``: on a narrow screen each row becomes a block, its cells one under the other, each labelled
    with its column (for tables of long text, whose text would otherwise be off to the side)."""

    def cells(row: Sequence[str], tag: str) -> str:
        out = []
        for i, cell in enumerate(row):
            attrs = ' class="num"' if align[i] == "r" else ""
            if stack and tag == "td":
                attrs += f' data-label="{_e(header[i])}"'
            out.append(f"<{tag}{attrs}>{cell}</{tag}>")
        return "".join(out)

    body = "".join(
        f"<tr{f' id={chr(34)}{ids[i]}{chr(34)}' if i < len(ids) else ''}>{cells(row, 'td')}</tr>"
        for i, row in enumerate(rows)
    )
    classes = " ".join(c for c in (cls, "stack" if stack else "") if c)
    head = cells([_e(h) for h in header], "th")
    return _scroll(f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _scroll(content: str) -> str:
    return f'<div class="scroll">{content}</div>'


def _tally(t: Tally) -> list[str]:
    return [str(t.terminal), str(t.recovered), str(t.total), str(t.runs_terminal), str(t.runs_recovered), str(t.runs)]


def modes_table(summary: Summary, links: TraceLinks) -> str:
    rows = []
    index = 0
    for category in summary.categories:
        rows.append(
            f'<tr class="group"><th scope="rowgroup">{_e(category.category)}</th>'
            + "".join(f'<td class="num">{v}</td>' for v in _tally(category.tally))
            + "<td></td></tr>"
        )
        for mode in category.modes:
            rows.append(
                f'<tr id="{mode_anchor(index)}"><td class="mode">{_e(mode.mode)}</td>'
                + "".join(f'<td class="num">{v}</td>' for v in _tally(mode.tally))
                + f'<td class="traces-cell">{links.html(mode.traces)}</td></tr>'
            )
            index += 1
    rows.append(
        '<tr class="total"><th scope="row">all</th>'
        + "".join(f'<td class="num">{v}</td>' for v in _tally(summary.failures))
        + "<td></td></tr>"
    )
    return _scroll(
        '<table class="modes"><thead>'
        '<tr><th rowspan="2">category / mode</th><th colspan="3" class="span">failures</th>'
        '<th colspan="3" class="span">runs affected</th><th rowspan="2">traces (terminal first)</th></tr>'
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
                f'<span class="nowrap"><span class="dot {outcome}"></span>{outcome}</span>',
                str(runs),
                _percent(runs, summary.runs),
                f"{score:.2f}" if score is not None else "–",
            ]
        )
    rows.append(["<b>all</b>", f"<b>{summary.runs}</b>", _percent(summary.runs, summary.runs), ""])
    return _table(["outcome", "runs", "share", "mean failure score"], rows, align="lrrr")


def files_table(summary: Summary) -> str:
    rows = [
        [
            f'<span class="path">{_path(fc.file)}</span>',
            str(fc.runs),
            *(str(n) for n in fc.outcomes.values()),
            _percent(fc.outcomes["terminal"], fc.runs),
            str(fc.failures),
        ]
        for fc in summary.files
    ]
    header = ["source file", "runs", "success", "recovered", "terminal", "terminal %", "failures"]
    return _table(header, rows, align="lrrrrrr")


def agents_table(summary: Summary, links: TraceLinks) -> str:
    rows = [
        [
            f'<span class="agent">{_e(agent_name(a.agent))}</span>',
            str(a.runs),
            *(str(n) for n in a.outcomes.values()),
            _percent(a.outcomes["terminal"], a.runs),
            str(a.failures.total),
            "<br>".join(f"<code>{_e(m.category)}.{_e(m.mode)}</code> {m.tally.total}" for m in a.top_modes) or "–",
            links.html(a.terminal_traces),
        ]
        for a in summary.agents
    ]
    header = ["agent", "runs", "success", "recovered", "terminal", "terminal %", "failures", "top modes"]
    return _table([*header, "traces (terminal runs)"], rows, align="lrrrrrrll", cls="agents", stack=True)


def critiques_table(summary: Summary, links: TraceLinks) -> str:
    rows = [
        [
            str(i),
            str(c.count),
            str(c.runs),
            str(c.terminal),
            "<br>".join(f"<code>{_e(m)}</code>" for m in c.modes),
            f'<span class="critique">{_e(c.example)}</span>',
            links.html(c.traces),
        ]
        for i, c in enumerate(summary.critiques, start=1)
    ]
    header = ["#", "count", "runs", "terminal", "mode", "critique (one example of the group)", "traces"]
    return _table(header, rows, align="rrrrlll", cls="critiques", stack=True)


def suspicions_table(summary: Summary, links: TraceLinks) -> str:
    rows = [
        [
            f"<code>{_e(s.category)}.{_e(s.mode)}</code>",
            str(s.count),
            str(s.runs),
            f'<span class="critique">{_e(s.example)}</span>',
            links.html(s.traces),
        ]
        for s in summary.suspicions
    ]
    header = ["mode", "findings", "runs", "critique (one example)", "traces"]
    return _table(header, rows, align="lrrll", cls="suspicions", stack=True)


def judges_table(summary: Summary, links: TraceLinks) -> str:
    rows = [
        [
            f"<code>{_e(j.evaluator)}</code>",
            str(j.failures),
            str(j.runs),
            str(j.terminal),
            str(j.errors),
            ", ".join(f"<code>{_e(mode)}</code> {n}" for mode, n in j.modes) or "-",
            links.html(j.traces),
        ]
        for j in summary.judges
    ]
    header = ["judge", "findings", "runs", "terminal runs", "runs unanswered", "modes", "traces"]
    return _table(header, rows, align="lrrrrll", cls="judges", stack=True)


def root_cause_table(summary: Summary, links: TraceLinks) -> str:
    buckets = root_cause_buckets(summary.root_cause_steps, summary.root_cause_traces)
    rows = [[_nowrap(b.label), str(b.runs), links.html(b.traces)] for b in buckets]
    return _table(["step", "runs", "traces"], rows, align="lrl", ids=[step_anchor(i) for i in range(len(buckets))])


# ---------------------------------------------------------------------------------------------------- time


def time_anchor(index: int) -> str:
    return f"time-{index}"


def _tick_step(largest: int) -> int:
    return next((s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000) if largest / s <= 5), -(-largest // 5))


def timeline_svg(timeline: Timeline) -> str:
    """Failures per bucket as stacked bars (terminal below, recovered above), drawn in SVG at a fixed scale: on a
    narrow screen it scrolls sideways instead of shrinking its labels. A bar links to its bucket's row."""
    slot, plot_h, left, top, bottom = 34, 180, 44, 12, 78
    n = len(timeline.buckets)
    width = max(left + n * slot + 16, 320)
    height = top + plot_h + bottom
    most = max((b.failures for b in timeline.buckets), default=0)
    tick = _tick_step(max(most, 1))
    ceiling = max(tick * -(-max(most, 1) // tick), 1)
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="failures over time">'
    ]
    for value in range(0, ceiling + 1, tick):
        y = top + plot_h - plot_h * value / ceiling
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{value}</text>'
        )
    label_every = max(1, -(-n // 12))
    for i, bucket in enumerate(timeline.buckets):
        x = left + i * slot + 5
        parts.append(_svg_bar(timeline, i, x, slot - 10, top, plot_h, ceiling))
        if i % label_every == 0:
            lx, ly = x + (slot - 10) / 2, top + plot_h + 12
            parts.append(
                f'<text x="{lx:.1f}" y="{ly:.1f}" class="tick" text-anchor="end" '
                f'transform="rotate(-40 {lx:.1f} {ly:.1f})">{_e(_short_label(timeline, bucket.start))}</text>'
            )
    parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#999"/>')
    parts.append("</svg>")
    return "".join(parts)


def _short_label(timeline: Timeline, start: float) -> str:
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(start, tz=timezone.utc)
    return when.strftime("%m-%d %H:%M" if timeline.width < 86400 else "%Y-%m-%d")


def _svg_bar(timeline: Timeline, i: int, x: float, w: float, top: int, plot_h: int, ceiling: int) -> str:
    bucket = timeline.buckets[i]
    base = top + plot_h
    h_t = plot_h * bucket.terminal / ceiling
    h_r = plot_h * bucket.recovered / ceiling
    tip = (
        f"{timeline.label(bucket)} UTC, {timeline.width_text()}: {bucket.runs} runs ({bucket.terminal_runs} terminal); "
        f"failures {bucket.terminal} terminal, {bucket.recovered} recovered"
    )
    bar = (
        f"<title>{_e(tip)}</title>"
        f'<rect class="terminal" x="{x:.1f}" y="{base - h_t:.1f}" width="{w:.1f}" height="{h_t:.1f}"/>'
        f'<rect class="recovered" x="{x:.1f}" y="{base - h_t - h_r:.1f}" width="{w:.1f}" height="{h_r:.1f}"/>'
    )
    if bucket.runs:  # a quiet bucket has no row to go to
        return f'<a href="#{time_anchor(i)}" class="bar">{bar}</a>'
    return f'<g class="bar">{bar}</g>'


def timeline_table(timeline: Timeline) -> str:
    rows, ids = [], []
    for i, b in enumerate(timeline.buckets):
        if not b.runs:
            continue
        ids.append(time_anchor(i))
        modes = "<br>".join(f'<span class="nowrap"><code>{_e(m)}</code> {t} / {r}</span>' for m, t, r in b.modes)
        rows.append(
            [
                _nowrap(timeline.label(b)),
                str(b.runs),
                str(b.terminal_runs),
                str(b.terminal),
                str(b.recovered),
                modes or "–",
            ]
        )
    header = ["from (UTC)", "runs", "terminal runs", "terminal", "recovered", "modes (terminal / recovered)"]
    return _table(header, rows, align="lrrrrl", ids=ids, cls="time")


# ---------------------------------------------------------------------------------------------------- page

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #222; font: 15px/1.45 %(font)s; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 6px; }
h3 { font-size: 15px; margin: 18px 0 6px; color: #444; }
p.sub, p.note { margin: 0 0 12px; color: #555; overflow-wrap: anywhere; }
p.note { font-size: 13.5px; }
nav.toc { margin: 8px 0 0; font-size: 14px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav.toc a { color: #2457a6; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 20px 22px; margin: 18px 0; }
section.suspicions { border: 2px dashed #9aa3b2; background: #fbfbfd; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px;
         background: #e8eaf0; color: #3d4656; vertical-align: middle; margin-left: 6px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 18px 0; }
.card { flex: 1 1 150px; background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 12px 16px;
        border-top: 4px solid #8a94a6; }
.card .value { font-size: 26px; font-weight: 650; }
.card .label { color: #555; font-size: 13px; }
.card.success { border-top-color: %(success)s; } .card.recovered { border-top-color: %(recovered)s; }
.card.terminal { border-top-color: %(terminal)s; } .card.suspicion { border-top-style: dashed; }
.split { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 24px; align-items: center; }
.split.wide { grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); align-items: start; }
.scroll { max-width: 100%%; overflow-x: auto; margin: 6px 0;
          /* a shadow at an edge with more table beyond it: on a narrow screen, a sign that it scrolls */
          background: linear-gradient(to right, #fff 30%%, rgba(255,255,255,0)),
                      linear-gradient(to left, #fff 30%%, rgba(255,255,255,0)) 100%% 0,
                      radial-gradient(farthest-side at 0 50%%, rgba(0,0,0,.18), rgba(0,0,0,0)),
                      radial-gradient(farthest-side at 100%% 50%%, rgba(0,0,0,.18), rgba(0,0,0,0)) 100%% 0;
          background-repeat: no-repeat; background-size: 40px 100%%, 40px 100%%, 14px 100%%, 14px 100%%;
          background-attachment: local, local, scroll, scroll; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
thead th { background: #f6f7f9; border-bottom: 1px solid #cfd4da; font-weight: 600; }
th.span { text-align: center; border-bottom: 1px solid #cfd4da; }
.num { text-align: right; white-space: nowrap; }
tr.group th, tr.group td { background: #fafbfc; font-weight: 600; }
tr.total th, tr.total td { font-weight: 700; border-top: 2px solid #cfd4da; }
tr.hit td, tr.hit th { background: #fff3c4; transition: background 0.3s; }
td.mode { padding-left: 26px; }
th.terminal { color: %(terminal)s; } th.recovered { color: #b07600; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%%; margin-right: 7px; }
.dot.success { background: %(success)s; } .dot.recovered { background: %(recovered)s; }
.dot.terminal { background: %(terminal)s; }
.path, code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
.path, .agent { overflow-wrap: break-word; }
.nowrap { white-space: nowrap; }
table.critiques, table.suspicions, table.agents, table.judges { width: 100%%; }
.critique { display: block; min-width: 14em; white-space: pre-wrap; overflow-wrap: anywhere; }
/* in the ids' own font: a 32-digit trace id fits a line (34ch), a longer label (file#index) wraps */
.traces { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px;
          min-width: 34ch; max-width: 52ch; line-height: 1.6; }
.traces summary, .traces .note { font-family: %(font)s; }
.traces code, .traces a { overflow-wrap: anywhere; }
.traces .trace { margin-right: 6px; }
a.trace { color: #2457a6; }
.traces details { margin: 2px 0 0; } .traces summary { font-size: 13px; }
.traces .more { max-height: 16em; overflow-y: auto; padding: 2px 0; }
.none { color: #999; }
details { margin-top: 10px; } summary { cursor: pointer; color: #444; }
.chart { width: 100%%; min-width: 0; }
svg.timeline { display: block; font: 11px %(font)s; }
svg.timeline .tick { fill: #555; }
svg.timeline a.bar:hover rect { opacity: 0.8; }
.legend { font-size: 13px; color: #444; margin: 4px 0; }
.legend .swatch { display: inline-block; width: 12px; height: 12px; margin: 0 5px 0 12px; vertical-align: -1px; }
.swatch.terminal { background: %(terminal)s; } .swatch.recovered { background: %(recovered)s; }
svg.timeline rect.terminal { fill: %(terminal)s; } svg.timeline rect.recovered { fill: %(recovered)s; }
footer { color: #777; font-size: 12.5px; margin-top: 24px; }
@media (max-width: 760px) {
  main { padding: 16px 10px 32px; }
  /* tables of long text: one block per row, each cell labelled with its column */
  table.stack, table.stack tbody, table.stack tr { display: block; width: 100%%; }
  table.stack thead { display: none; }
  table.stack tr { border-bottom: 1px solid #cfd4da; padding: 6px 0; }
  table.stack td { display: block; border: 0; padding: 2px 2px; text-align: left; }
  table.stack td.num { display: inline-block; padding-right: 14px; }
  table.stack td::before { content: attr(data-label); display: block; font-size: 12px; color: #666; }
  table.stack td.num::before { display: inline; margin-right: 5px; }
  section { padding: 14px 12px; }
  .split, .split.wide { grid-template-columns: minmax(0, 1fr); }
  h1 { font-size: 22px; }
}
""" % dict(font=FONT, **COLOURS)  # noqa: UP031 -- the CSS is full of braces


def _cards(summary: Summary) -> str:
    cards = [("runs", str(summary.runs), "runs evaluated")]
    cards += [(o, str(n), f"{o} ({_percent(n, summary.runs)})") for o, n in summary.outcomes.items()]
    f = summary.failures
    cards.append(("failures", str(f.total), f"failures ({f.terminal} terminal, {f.recovered} recovered)"))
    if summary.suspicions:
        n = sum(s.count for s in summary.suspicions)
        cards.append(("suspicion", str(n), f"suspicions, not failures ({summary.suspected_runs} runs)"))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card {cls}"><div class="value">{value}</div><div class="label">{_e(label)}</div></div>'
            for cls, value, label in cards
        )
        + "</div>"
    )


def _modes_section(go: Any, summary: Summary, links: TraceLinks) -> list[str]:
    f = summary.failures
    parts = [
        '<section id="modes"><h2>Failure modes: terminal and recovered</h2>',
        f'<p class="note">{f.total} failures in {f.runs} runs, by category and mode, most frequent first. '
        "A failure is <b>terminal</b> when the run fails because of it, <b>recovered</b> when a later step "
        "corrected it. Click a bar for its traces.</p>",
    ]
    if not summary.modes:
        return [*parts, "<p>No failures.</p>", "</section>"]
    return [
        *parts,
        f'<div class="chart">{modes_chart(go, summary)}</div>',
        "<h3>The same numbers, with the traces</h3>",
        '<p class="note">Runs affected: runs with at least one such failure (a run can have both a '
        "terminal and a recovered one).</p>",
        modes_table(summary, links),
        "</section>",
    ]


def _agents_section(summary: Summary, links: TraceLinks) -> list[str]:
    if not summary.agents:
        return []
    return [
        '<section id="agents"><h2>By agent</h2>',
        '<p class="note">Runs per agent (<code>gen_ai.agent.name</code>; results files written before the agent '
        "was recorded have none: <i>(unnamed)</i>), their outcomes, failures and most frequent failure modes, "
        "and the agent's terminal runs.</p>",
        agents_table(summary, links),
        "</section>",
    ]


def _timeline_section(timeline: Timeline | None) -> list[str]:
    if timeline is None:
        return []
    legend = (
        '<p class="legend"><span class="swatch terminal"></span>terminal'
        '<span class="swatch recovered"></span>recovered</p>'
    )
    return [
        '<section id="timeline"><h2>Failures over time</h2>',
        f'<p class="note">Failures per {timeline.width_text()} (UTC), by when the processor evaluated the trace; '
        "suspicions are not counted. Click a bar for its row.</p>",
        legend,
        _scroll(timeline_svg(timeline)),
        timeline_table(timeline),
        "</section>",
    ]


def _critiques_section(summary: Summary, links: TraceLinks) -> list[str]:
    parts = ['<section id="critiques"><h2>Most frequent critiques</h2>']
    if summary.critiques:
        parts += [
            f'<p class="note">The top {len(summary.critiques)} of {summary.distinct_critiques} distinct critiques '
            "of failures. Critiques that differ only in numbers and quoted values are counted together; one of them "
            "is shown.</p>",
            critiques_table(summary, links),
        ]
    elif summary.distinct_critiques:
        parts.append(f'<p class="note">{summary.distinct_critiques} distinct critiques; none shown.</p>')
    else:
        parts.append("<p>No critiques.</p>")
    return [*parts, "</section>"]


def _suspicions_section(summary: Summary, links: TraceLinks) -> list[str]:
    if not summary.suspicions:
        return []
    n = sum(s.count for s in summary.suspicions)
    return [
        '<section id="suspicions" class="suspicions">',
        '<h2>Suspicions <span class="badge">not failures</span></h2>',
        f'<p class="note">{n} findings in {summary.suspected_runs} runs ({summary.suspected_successes} of them '
        "judged a success) that decided no outcome: too weak alone, or read from text with nothing structural to "
        "back them. They raise the failure score but are counted in none of the failures above. Worth a look, "
        "not an alert.</p>",
        suspicions_table(summary, links),
        "</section>",
    ]


def _judges_section(summary: Summary, links: TraceLinks) -> list[str]:
    if not summary.judges:
        return []
    return [
        '<section id="judges"><h2>From the judge</h2>',
        '<p class="note">Findings of evaluation models (<code>--judge</code>), counted among the failures and '
        "suspicions above like the detectors' (their evidence kind is <code>judge</code>); runs unanswered are "
        "those where the judge could not be asked or its answer could not be used, twice: the detectors' verdict "
        "stands there.</p>",
        judges_table(summary, links),
        "</section>",
    ]


def _root_cause_section(go: Any, summary: Summary, links: TraceLinks) -> list[str]:
    if not summary.root_cause_steps:
        return []
    located = sum(summary.root_cause_steps.values())
    return [
        '<section id="root-cause"><h2>Root cause: where runs go wrong</h2>',
        f'<p class="note">Step of the earliest terminal failure in each of the {located} runs that have one '
        f"(median step {summary.root_cause_median():g}). An in-loop check has to fire there. "
        "Click a bar for its traces.</p>",
        f'<div class="split wide"><div class="chart">{root_cause_chart(go, summary)}</div>'
        f"<div>{root_cause_table(summary, links)}</div></div>",
        "</section>",
    ]


def _toc(summary: Summary) -> str:
    entries = [("modes", "failure modes")]
    entries += [("agents", "agents")] if summary.agents else []
    entries += [("timeline", "over time")] if summary.timeline is not None else []
    entries += [("outcomes", "outcomes"), ("critiques", "critiques")]
    entries += [("suspicions", "suspicions")] if summary.suspicions else []
    entries += [("judges", "from the judge")] if summary.judges else []
    entries += [("root-cause", "root cause")] if summary.root_cause_steps else []
    return '<nav class="toc">' + "".join(f'<a href="#{a}">{label}</a>' for a, label in entries) + "</nav>"


def render_html(summary: Summary, *, title: str = "Agent failure report", links: TraceLinks | None = None) -> str:
    """The whole report as one HTML page, plotly.js inlined once; raises MissingPlotly without plotly.
    ``links`` says how many traces each row lists before '+k more', and how trace ids link to a trace UI."""
    go, get_plotlyjs = _plotly()
    links = links or TraceLinks()
    sources = ", ".join(f'<span class="path">{_e(f)}</span>' for f in summary.results_files) or "no file"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>",
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
        f"<script>{get_plotlyjs()}</script>",
        f"<script>{_JUMP}</script>",
        "</head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{summary.runs} evaluated run{"s" if summary.runs != 1 else ""}, from {sources}</p>',
        _toc(summary),
        _cards(summary),
        *_modes_section(go, summary, links),
        *_agents_section(summary, links),
        *_timeline_section(summary.timeline),
        '<section id="outcomes"><h2>Run outcomes</h2>',
        f'<div class="split"><div class="chart">{outcomes_chart(go, summary)}</div><div>{outcomes_table(summary)}</div>'
        "</div>",
        "<h3>By source file</h3>",
        files_table(summary),
        "</section>",
        *_critiques_section(summary, links),
        *_suspicions_section(summary, links),
        *_judges_section(summary, links),
        *_root_cause_section(go, summary, links),
        "<footer>Generated by otel-agent-eval report. Self-contained: the charts are drawn by plotly.js, "
        "inlined in this page; nothing is fetched.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"
