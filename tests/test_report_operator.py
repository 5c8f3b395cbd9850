"""The report as an operator's tool: the traces behind every row (linked with --trace-url), the per-agent
breakdown, failures over time from the processor's store, suspicions apart, and a page that clips nothing,
checked in headless Chromium at two widths."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DATA
from helpers import send_greetings
from test_processor import config, send_runs, wait_for
from test_report import SAMPLE, _png_pixels, _rgb
from test_report import _chromium as chromium

from otel_agent_eval.processor import Processor
from otel_agent_eval.processor import store as store_module
from otel_agent_eval.report import load_results, summarize
from otel_agent_eval.report.command import report
from otel_agent_eval.report.html import COLOURS, render_html
from otel_agent_eval.report.load import TraceRef, parse_result
from otel_agent_eval.report.summary import Tally
from otel_agent_eval.report.text import render_text
from otel_agent_eval.report.timeline import MAX_BUCKETS, bucket_width, build_timeline
from otel_agent_eval.report.traces import TraceLinks

JAEGER = "http://jaeger:16686/trace/{trace_id}"
T1, T3, T4, T6 = "a1" * 16, "c3" * 16, "d4" * 16, "f6" * 16
HOSTILE = '"><img src=x onerror=alert(1)>/a?b#c'  # a trace id as whoever sent the spans chose it


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(report, list(args))
    return result.exit_code, result.stdout, result.stderr


def finding(
    mode: str, outcome: str = "terminal", step: int = 3, category: str = "workflow", critique: str = "x"
) -> dict[str, Any]:
    return {"mode": mode, "category": category, "step": step, "span_id": None, "outcome": outcome,
            "critique": critique, "evidence": "", "evaluator": "test", "confidence": 0.9}  # fmt: skip


def line(index: int, trace_id: str | None, outcome: str, failures: list[Any], **extra: Any) -> str:
    obj = {"source": {"file": "runs.json", "index": index, "id": None}, "trace_id": trace_id, "outcome": outcome,
           "failure_score": 0.5, "failures": failures, **extra}  # fmt: skip
    return json.dumps(obj)


def known_results(tmp_path: Path) -> Path:
    """Six runs of known content: two agents and one unnamed run, one run without a trace id, a suspicion."""
    lines = [
        line(0, T1, "terminal", [finding("policy_violation", step=5, critique="Ask first (#1)."),
                                 finding("policy_violation", step=7, critique="Ask first (#2).")], agent="billing"),
        line(1, HOSTILE, "recovered", [finding("wrong_arguments", "recovered", category="tool", critique="Fix it.")],
             agent="billing"),
        line(2, T3, "success", [], agent="billing",
             suspicions=[finding("unnecessary_transfer", critique="Do not hand off <b>so soon</b>.")]),
        line(3, T4, "terminal", [finding("loop", step=4, critique="Stop repeating.")], agent="support"),
        line(4, None, "terminal", [finding("wrong_arguments", step=2, category="tool", critique="Fix it.")],
             agent="support"),
        line(5, T6, "success", []),  # a results file of before "agent": no name
    ]  # fmt: skip
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class _Traces(HTMLParser):
    """Each trace list of a page: (row id or first cell text, [(label, href or None)], '+k more' or None)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[tuple[str, str | None]]] = {}
        self.more: dict[str, str] = {}
        self._row: str | None = None
        self._href: str | None = None
        self._in: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr":
            self._row = a.get("id") or f"row{len(self.rows)}"
            self.rows[self._row] = []
        elif tag == "a" and a.get("class") == "trace":
            self._href = a.get("href")
        elif tag == "code" and (a.get("class") == "trace" or self._href is not None):
            self._in, self._text = "trace", ""
        elif tag == "summary":
            self._in, self._text = "summary", ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "code" and self._in == "trace" and self._row is not None:
            self.rows[self._row].append((self._text, self._href))
            self._in = None
        elif tag == "a":
            self._href = None
        elif tag == "summary" and self._in == "summary" and self._row is not None:
            self.more[self._row] = self._text
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text += data


def traces_of(page: str) -> _Traces:
    parser = _Traces()
    parser.feed(page)
    return parser


# ---------------------------------------------------------------------------------------------------- results


def test_evaluate_writes_the_agent_and_report_reads_it_back(tmp_path: Path) -> None:
    from otel_agent_eval.cli import main

    results = tmp_path / "r.jsonl"
    done = CliRunner().invoke(main, ["evaluate", str(DATA / "tau2" / "retail-gpt-4.1.json"), "-o", str(results)])
    assert done.exit_code == 0, done.stderr
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(lines) == 40 and {x["agent"] for x in lines} == {"llm_agent"}  # τ²: info.agent_info.implementation
    assert list(lines[0])[:3] == ["source", "trace_id", "agent"]
    [agent] = summarize(load_results([results])).agents
    assert (agent.agent, agent.runs, sum(agent.outcomes.values())) == ("llm_agent", 40, 40)


def test_old_results_files_without_agent_or_suspicions_still_read() -> None:
    runs = load_results([SAMPLE])  # no "suspicions" anywhere, and "agent" on three lines only
    assert [r.agent for r in runs].count(None) == 9 and runs[1].agent == "retail-agent"
    assert all(r.suspicions == () for r in runs)
    assert [(a.agent, a.runs) for a in summarize(runs).agents] == [("retail-agent", 3), (None, 9)]


def test_a_run_without_a_trace_id_is_named_by_its_source() -> None:
    bare = {"source": {"file": "runs.json", "index": 4}, "outcome": "success"}
    assert parse_result(bare, file="r.jsonl", line=1).ref == TraceRef("runs.json#4", None)
    by_id = {"source": {"file": "runs.json", "id": "t-7"}, "outcome": "success"}
    assert parse_result(by_id, file="r.jsonl", line=1).ref == TraceRef("runs.json#t-7", None)
    live = {"source": {}, "outcome": "success"}
    assert parse_result(live, file="r.jsonl", line=9).ref == TraceRef("r.jsonl:9", None)


# ---------------------------------------------------------------------------------------------------- numbers


def test_per_agent_numbers(tmp_path: Path) -> None:
    s = summarize(load_results([known_results(tmp_path)]))
    billing, support, unnamed = s.agents
    assert (billing.agent, billing.runs, billing.outcomes) == ("billing", 3, {"success": 1, "recovered": 1,
                                                                              "terminal": 1})  # fmt: skip
    assert billing.failures == Tally(terminal=2, recovered=1, runs_terminal=1, runs_recovered=1, runs=2)
    assert [(m.mode, m.tally.total) for m in billing.top_modes] == [("policy_violation", 2), ("wrong_arguments", 1)]
    assert billing.terminal_traces == (TraceRef(T1, T1),) and round(billing.terminal_share, 3) == 0.333
    assert (support.agent, support.runs, support.outcomes["terminal"], support.terminal_share) == ("support", 2, 2, 1.0)
    assert [(m.mode, m.tally.terminal) for m in support.top_modes] == [("loop", 1), ("wrong_arguments", 1)]
    assert support.terminal_traces == (TraceRef(T4, T4), TraceRef("runs.json#4", None))
    assert (unnamed.agent, unnamed.runs, unnamed.outcomes["success"], unnamed.top_modes) == (None, 1, 1, ())

    lines = render_text(s).splitlines()
    start = lines.index("Runs by agent")
    assert lines[start + 1 : start + 5] == [
        "  agent      runs  success  recovered  terminal  terminal %  failures  top failure modes",
        "  billing       3        1          1         1       33.3%         3  workflow.policy_violation 2, "
        "tool.wrong_arguments 1",
        "  support       2        0          0         2      100.0%         2  workflow.loop 1, "
        "tool.wrong_arguments 1",
        "  (unnamed)     1        1          0         0        0.0%         0  -",
    ]


def test_every_row_lists_its_traces_terminal_first(tmp_path: Path) -> None:
    s = summarize(load_results([known_results(tmp_path)]))
    modes = {m.mode: m.traces for m in s.modes}
    # wrong_arguments: terminal in run 4 (no trace id), recovered in run 1
    assert modes["wrong_arguments"] == (TraceRef("runs.json#4", None), TraceRef(HOSTILE, HOSTILE))
    assert modes["policy_violation"] == (TraceRef(T1, T1),)  # two findings, one run: listed once
    fix = next(c for c in s.critiques if c.example == "Fix it.")
    assert fix.traces == modes["wrong_arguments"]
    assert s.root_cause_traces == {2: (TraceRef("runs.json#4", None),), 4: (TraceRef(T4, T4),), 5: (TraceRef(T1, T1),)}


def test_suspicions_are_apart_and_not_failures(tmp_path: Path) -> None:
    s = summarize(load_results([known_results(tmp_path)]))
    assert s.failures.total == 5 and "unnecessary_transfer" not in {m.mode for m in s.modes}
    assert s.outcomes["success"] == 2  # the suspected run stays a success
    [suspicion] = s.suspicions
    assert (suspicion.mode, suspicion.count, suspicion.runs, suspicion.traces) == (
        "unnecessary_transfer", 1, 1, (TraceRef(T3, T3),))  # fmt: skip
    assert (s.suspected_runs, s.suspected_successes) == (1, 1)
    assert all(c.example != "Do not hand off <b>so soon</b>." for c in s.critiques)  # critiques are of failures

    text = render_text(s)
    head, _, tail = text.partition("Suspicions, not failures: 1 finding in 1 run (1 judged success)")
    assert tail and "unnecessary_transfer" not in head and "workflow.unnecessary_transfer" in tail and T3 in tail
    page = render_html(s)
    section = page[page.index('<section id="suspicions"') :]
    section = section[: section.index("</section>")]
    assert 'class="suspicions"' in section and "not failures" in section and T3 in section
    assert "Do not hand off &lt;b&gt;so soon&lt;/b&gt;." in section
    modes = page[page.index('<section id="modes"') :]
    assert "unnecessary_transfer" not in modes[: modes.index("</section>")]


# ---------------------------------------------------------------------------------------------------- links


def test_trace_ids_are_listed_and_linked_with_trace_url(tmp_path: Path) -> None:
    results = known_results(tmp_path)
    page_file = tmp_path / "r.html"
    code, out, err = invoke(str(results), "--html", str(page_file), "--trace-url", JAEGER)
    assert code == 0, err
    page = page_file.read_text(encoding="utf-8")
    rows = traces_of(page)
    quoted = "%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%2Fa%3Fb%23c"
    modes = {m.mode: i for i, m in enumerate(summarize(load_results([results])).modes)}
    assert rows.rows[f"mode-{modes['wrong_arguments']}"] == [
        ("runs.json#4", None),  # no trace id: listed, never linked
        (HOSTILE, f"http://jaeger:16686/trace/{quoted}"),
    ]
    assert rows.rows[f"mode-{modes['loop']}"] == [(T4, f"http://jaeger:16686/trace/{T4}")]
    assert [r for r in rows.rows.values() if r == [(T3, f"http://jaeger:16686/trace/{T3}")]]  # the suspicion's row
    assert "<img src=x" not in page and "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    links = re.findall(r'<a class="trace" href="([^"]*)" target="_blank" rel="noopener noreferrer">', page)
    assert links and all(h.startswith("http://jaeger:16686/trace/") and "<" not in h for h in links)

    # the text report prints the URLs under each mode; the run without a trace id by its source
    assert f"    http://jaeger:16686/trace/{T4}" in out.splitlines()
    assert f"    http://jaeger:16686/trace/{quoted}" in out.splitlines() and "    runs.json#4" in out.splitlines()
    _, plain, _ = invoke(str(results))
    assert "http://" not in plain and f"    {T4}" in plain.splitlines()


def test_long_lists_show_the_first_n_and_the_rest_behind_more(tmp_path: Path) -> None:
    results = tmp_path / "many.jsonl"
    ids = [f"{i:032x}" for i in range(7)]
    results.write_text("".join(line(i, t, "terminal", [finding("loop")]) + "\n" for i, t in enumerate(ids)))
    page_file = tmp_path / "r.html"
    code, out, err = invoke(str(results), "--html", str(page_file), "--traces", "2")
    assert code == 0, err
    page = page_file.read_text(encoding="utf-8")
    rows = traces_of(page)
    assert [label for label, _ in rows.rows["mode-0"]] == ids  # all seven: two shown, five behind the click
    assert rows.more["mode-0"] == "+5 more"
    shown = page[page.index('<tr id="mode-0">') :]
    shown = shown[: shown.index("<details>")]
    assert shown.count('class="trace"') == 2
    assert f"    {ids[0]}  {ids[1]}  +5 more" in out.splitlines()
    assert TraceLinks(shown=1).inline([TraceRef(x, x) for x in ids[:1]]) == ids[0]  # nothing more: no '+0 more'


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("http://jaeger:16686/trace/", "has no {trace_id}"),
        ("http://jaeger:16686/trace/{traceid}", "has no {trace_id}"),
        ("javascript:alert(1)//{trace_id}", "is not an http:// or https:// URL"),
        ("jaeger/{trace_id}", "is not an http:// or https:// URL"),
    ],
)
def test_a_bad_trace_url_exits_2(tmp_path: Path, template: str, message: str) -> None:
    page = tmp_path / "r.html"
    code, out, err = invoke(str(known_results(tmp_path)), "--html", str(page), "--trace-url", template)
    assert code == 2 and "--trace-url" in err and message in err and "Traceback" not in err
    assert out == "" and not page.exists()


# ---------------------------------------------------------------------------------------------------- the store


def test_bucket_width_is_round_and_bounded() -> None:
    assert bucket_width(0, 0) == 60
    assert bucket_width(0, 23 * 60) == 60 and bucket_width(0, 24 * 60) == 300  # 25 one-minute buckets: too many
    assert bucket_width(0, 6 * 3600) == 1800 and bucket_width(0, 2 * 86400) == 3 * 3600
    for span in (0, 59, 3599, 86400 * 3, 86400 * 400, 86400 * 5000):
        width = bucket_width(1_700_000_123, 1_700_000_123 + span)
        assert (1_700_000_123 + span) // width - 1_700_000_123 // width + 1 <= MAX_BUCKETS


def _saved(store: store_module.Store, monkeypatch: pytest.MonkeyPatch, when: float, *args: Any) -> None:
    monkeypatch.setattr("otel_agent_eval.processor.store.time.time", lambda: when)
    store.save_trace(*args)
    monkeypatch.undo()


def test_store_failures_over_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store written through the store's own API at known times: 0, 2 and 50 minutes past 12:00 UTC."""
    t0 = 1_717_243_200.0  # 2024-06-01 12:00:00 UTC
    store = store_module.Store(tmp_path / "data" / "agent-eval.sqlite")

    def result(trace: str, outcome: str, failures: list[Any]) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(line(0, trace, outcome, failures))
        return loaded

    _saved(store, monkeypatch, t0, T1, "shop", [result(T1, "terminal", [finding("loop"), finding("loop")])], b"")
    _saved(store, monkeypatch, t0 + 120, T3, "shop", [result(T3, "recovered", [finding("loop", "recovered")])], b"")
    _saved(store, monkeypatch, t0 + 3000, T4, None, [result(T4, "success", [])], b"")
    store.close()

    code, out, err = invoke("--store", str(tmp_path / "data"))
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("Failures over time, per 5 min (█ terminal, ▒ recovered)")
    body = lines[start + 2 : start + 13]
    assert body[0].split()[:7] == ["2024-06-01", "12:00", "2", "1", "2", "1", "█" * 20 + "▒" * 10]
    assert body[0].endswith("workflow.loop 2/1")
    assert [b.split()[1] for b in body] == [f"12:{m:02d}" for m in range(0, 55, 5)]  # quiet buckets kept
    assert [b.split()[2] for b in body] == ["2", *["0"] * 9, "1"]
    assert "  shop" in out and "(unnamed)" in out  # the store's agent column names the runs

    page_file = tmp_path / "r.html"
    assert invoke("--store", str(tmp_path / "data"), "--html", str(page_file))[0] == 0
    page = page_file.read_text(encoding="utf-8")
    start = page.index('<svg class="timeline"')
    svg = page[start : page.index("</svg>", start)]
    assert svg.count('class="bar"') == 11  # a bar per bucket, the quiet ones too
    assert re.findall(r'<a href="#(time-\d+)"', svg) == ["time-0", "time-10"]  # the buckets with runs...
    assert re.findall(r'<tr id="(time-\d+)"', page) == ["time-0", "time-10"]  # ...link to their rows
    assert "<title>2024-06-01 12:00 UTC, 5 min: 2 runs (1 terminal); failures 2 terminal, 1 recovered</title>" in svg


def test_store_from_the_real_processor(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path))
    send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]  # agent "shop", terminal
    send_greetings(processor.grpc.endpoint, ["greeter"])  # type: ignore[union-attr]  # a success
    wait_for(lambda: len(processor.store.recent_traces()) == 3)
    stored = {t.trace_id: t for t in processor.store.recent_traces()}
    processor.stop()

    page_file = tmp_path / "r.html"
    code, out, err = invoke("--store", str(tmp_path / "data"), "--html", str(page_file), "--trace-url", JAEGER)
    assert code == 0, err
    assert out.startswith("3 runs evaluated, from " + str(tmp_path / "data" / "agent-eval.sqlite"))
    lines = out.splitlines()
    timeline = lines[lines.index("Failures over time, per 1 min (█ terminal, ▒ recovered)") + 2 :]
    runs = sum(int(row.split()[2]) for row in timeline[: next(i for i, r in enumerate(timeline) if not r)])
    assert runs == 3  # every stored trace in a bucket
    shop = next(row for row in lines if row.startswith("  shop "))
    assert shop.split()[1:5] == ["2", "0", "0", "2"] and "tool.wrong_arguments" in shop
    assert next(row for row in lines if row.startswith("  greeter ")).split()[1:3] == ["1", "1"]
    terminal = sorted(t for t, row in stored.items() if row.outcome == "terminal")
    for trace_id in terminal:
        assert f"    http://jaeger:16686/trace/{trace_id}" in lines
    page = page_file.read_text(encoding="utf-8")
    assert '<section id="timeline">' in page and all(f'href="http://jaeger:16686/trace/{t}"' in page for t in terminal)


def test_a_store_that_is_not_one_exits_2(tmp_path: Path) -> None:
    (tmp_path / "agent-eval.sqlite").write_bytes(b"not a database at all" * 100)
    code, _, err = invoke("--store", str(tmp_path))
    assert code == 2 and "cannot read the trace store" in err and "Traceback" not in err
    code, _, err = invoke("--store", str(tmp_path / "nowhere"))
    assert code == 2 and "no trace store here" in err
    assert invoke(str(SAMPLE), "--store", str(tmp_path))[0] == 2  # results files or a store, not both


def test_runs_without_a_time_have_no_timeline(tmp_path: Path) -> None:
    runs = load_results([known_results(tmp_path)])
    assert build_timeline(runs) is None and summarize(runs).timeline is None
    assert "Failures over time" not in render_text(summarize(runs))
    assert build_timeline([replace(runs[0], evaluated=60.0)]) is not None


# ---------------------------------------------------------------------------------------------------- Chromium

#: Runs in the report's own page (a copy with it appended), once it is drawn, and posts what it found to the
#: harness page around it: a page that scrolls sideways, a section wider than itself, a table box that clips its
#: rows, a text cell whose text overflows it, a chart wider than its box, and whether the critiques table's last
#: row and its text are whole inside their box and section.
LAYOUT_CHECK = """
(function () {
  function check() {
    var out = [], root = document.documentElement;
    if (root.scrollWidth > root.clientWidth + 1) out.push("the page scrolls sideways: " + root.scrollWidth);
    document.querySelectorAll("main > *").forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) out.push((el.id || el.tagName) + " overflows: " + el.scrollWidth);
    });
    document.querySelectorAll(".scroll").forEach(function (box) {
      if (box.scrollHeight > box.clientHeight + 1) out.push("a table box clips its rows");
    });
    document.querySelectorAll("td, th, p, h1, h2, h3, .card, .critique, .traces").forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) out.push("text overflows its box: " + el.textContent.slice(0, 50));
    });
    document.querySelectorAll(".js-plotly-plot").forEach(function (chart) {
      var box = chart.parentElement.getBoundingClientRect(), r = chart.getBoundingClientRect();
      if (r.right > box.right + 1) out.push("chart " + chart.id + " is wider than its box");
    });
    var rows = document.querySelectorAll("table.critiques tbody tr"), last = rows[rows.length - 1], text = "";
    if (last) {
      var r = last.getBoundingClientRect(), box = last.closest(".scroll").getBoundingClientRect();
      var section = last.closest("section").getBoundingClientRect(), cell = last.querySelector(".critique");
      text = cell.textContent;
      if (r.bottom > box.bottom + 1 || r.bottom > section.bottom + 1) out.push("the last critique row is cut");
      if (cell.getBoundingClientRect().bottom > r.bottom + 1 || cell.scrollHeight > cell.clientHeight + 1)
        out.push("the last critique's text is cut");
    }
    return {width: window.innerWidth, problems: out, critiques: rows.length, last: text};
  }
  window.addEventListener("load", function () {
    setTimeout(function () { parent.postMessage(JSON.stringify(check()), "*"); }, 500);
  });
})();
"""

# An iframe of exactly the width asked for: headless Chromium lays a window out at least 500 px wide whatever
# --window-size says (and crops the screenshot), so a narrow width is only real inside a frame.
HARNESS = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="{src}" style="border:0;display:block;width:{width}px;height:{height}px"></iframe><pre id="layout"></pre>
<script>window.addEventListener("message", function (e) {{ document.getElementById("layout").textContent = e.data; }});
</script></body></html>"""


def _chromium(tmp_path: Path, *args: str) -> str:
    return chromium(tmp_path, "--hide-scrollbars", *args).stdout


def layout(tmp_path: Path, page: Path, width: int, *, css: str = "", screenshot: Path | None = None) -> Any:
    """What :data:`LAYOUT_CHECK` finds in ``page`` laid out ``width`` px wide (and, if asked, a screenshot)."""
    checked = tmp_path / f"checked-{width}-{len(css)}.html"
    text = page.read_text(encoding="utf-8").replace("</head>", f"<style>{css}</style></head>", 1)
    checked.write_text(text.replace("</body>", f"<script>{LAYOUT_CHECK}</script></body>"), encoding="utf-8")
    harness = tmp_path / f"harness-{width}.html"
    harness.write_text(HARNESS.format(src=checked.name, width=width, height=3000), encoding="utf-8")
    window = f"--window-size={max(width, 500)},3000"
    dom = _chromium(tmp_path, window, "--dump-dom", harness.as_uri())
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.DOTALL)
    assert found and found.group(1), "the layout check did not report"
    if screenshot is not None:
        _chromium(tmp_path, window, f"--screenshot={screenshot}", harness.as_uri())
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def wide_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report on recorded runs, with a long critique, a long agent name and long lists of traces: what clips
    if anything does; and the critiques table's last critique."""
    from otel_agent_eval.cli import main

    tmp = tmp_path_factory.mktemp("page")
    results = tmp / "r.jsonl"
    files = [str(DATA / "tau-bench" / "airline-gpt-4o-tasks-00-24.json"), str(DATA / "tau2" / "retail-gpt-4.1.json")]
    assert CliRunner().invoke(main, ["evaluate", *files, "-o", str(results)]).exit_code == 0
    long = "Tell the user the refund " + "amount, the order and the card it goes back to, " * 12 + "then ask."
    extra = line(99, "e9" * 16, "terminal", [finding("policy_violation", critique=long)] * 40, agent="a" * 80)
    results.write_text(results.read_text() + extra + "\n")
    page = tmp / "report.html"
    code, _, err = invoke(str(results), "--html", str(page), "--top", "12", "--trace-url", JAEGER)
    assert code == 0, err
    last = summarize(load_results([results]), top=12).critiques[-1].example
    return page, last


@pytest.mark.parametrize("width", [1280, 420])
def test_nothing_is_clipped_at_two_widths(tmp_path: Path, wide_page: tuple[Path, str], width: int) -> None:
    page, last = wide_page
    shot = tmp_path / f"report-{width}.png"
    found = layout(tmp_path, page, width, screenshot=shot)
    assert found["width"] == width
    assert found["problems"] == []
    assert found["critiques"] == 12 and found["last"] == last  # the last row, whole
    assert "Tell the user the refund amount" in page.read_text(encoding="utf-8")
    png_width, _, colours = _png_pixels(shot)
    assert png_width == max(width, 500) and len(colours) > 200  # drawn, not blank
    assert colours[_rgb(COLOURS["terminal"])] > 2_000  # the charts' bars were painted


def test_the_layout_check_finds_clipping(tmp_path: Path, wide_page: tuple[Path, str]) -> None:
    """The check above can fail: with the table boxes made to overflow and critiques kept on one line, it says so."""
    broken = (
        ".scroll { overflow: visible !important; } .critique { white-space: nowrap !important; } "
        "table.stack, table.stack * { display: revert !important; }"
    )
    found = layout(tmp_path, wide_page[0], 420, css=broken)
    assert any("overflows" in p for p in found["problems"]), found["problems"]
