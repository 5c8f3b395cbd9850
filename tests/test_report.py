"""The report: loading results.jsonl, the aggregation, the text tables, the HTML page rendered in Chromium."""

from __future__ import annotations

import collections
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from otel_agent_eval.errors import InputError
from otel_agent_eval.report import load_results, summarize
from otel_agent_eval.report.command import report
from otel_agent_eval.report.html import COLOURS, render_html
from otel_agent_eval.report.summary import Tally, normalize_critique
from otel_agent_eval.report.text import render_text

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(__file__).resolve().parent / "fixtures" / "results-sample.jsonl"
CHROMIUM = Path("/usr/bin/chromium")
RETAIL = "tau2/retail-gpt-4.1.json"
AIRLINE = "tau-bench/airline-gpt-4o-tasks-00-24.json"
NASTY = "<script>alert('x')</script> Use <b>order</b> & \"quotes\" <img src=x onerror=alert(1)>"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(report, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_line(outcome: str = "terminal", failures: list[dict[str, object]] | None = None, index: int = 0) -> str:
    return json.dumps(
        {
            "source": {"file": "runs.json", "index": index, "id": None},
            "trace_id": "ab" * 16,
            "outcome": outcome,
            "failure_score": 0.9,
            "failures": failures or [],
        }
    )


def finding(critique: str, mode: str = "wrong_information", outcome: str = "terminal") -> dict[str, object]:
    return {
        "mode": mode,
        "category": "user_interaction",
        "step": 3,
        "span_id": None,
        "outcome": outcome,
        "critique": critique,
        "evidence": "",
        "evaluator": "test",
        "confidence": 0.5,
    }


# ---------------------------------------------------------------------------------------------------- loading


def test_load_reads_every_run_ignoring_blank_lines_and_extra_fields() -> None:
    runs = load_results([SAMPLE])
    assert len(runs) == 12
    assert [r.line for r in runs][6:8] == [7, 9]  # line 8 is blank
    first = runs[1]
    assert (first.source_file, first.source_index, first.source_id, first.outcome) == (RETAIL, 1, "1", "terminal")
    assert first.failures[0].mode == "wrong_arguments" and first.failures[0].span_id is not None
    assert runs[-1].failures == () and runs[-1].outcome == "terminal"


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "results.jsonl"
    bad.write_text(run_line() + "\n\n" + '{"source": {"file": "runs.json", "index": 1}, "outcome": \n')
    with pytest.raises(InputError) as info:
        load_results([bad])
    assert info.value.file == str(bad) and info.value.field == "line 3"
    assert str(info.value).startswith(f"{bad}: line 3: not valid JSON")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "expected a JSON object, got a list"),
        ({"outcome": "success"}, "source: missing"),
        (
            {"source": {"file": "a", "index": "0"}, "outcome": "success"},
            "source.index: expected an integer, got a string",
        ),
        (
            {"source": {"file": "a", "index": 0}, "outcome": "fatal"},
            "outcome: 'fatal' is not success, recovered or terminal",
        ),
        (
            {"source": {"file": "a", "index": 0}, "outcome": "terminal", "failure_score": 1.5},
            "failure_score: 1.5 is not in [0.0, 1.0]",
        ),
        (
            {
                "source": {"file": "a", "index": 0},
                "outcome": "terminal",
                "failures": [{**finding("x"), "outcome": "?"}],
            },
            "failures[0].outcome: '?' is not terminal or recovered",
        ),
        (
            {"source": {"file": "a", "index": 0}, "outcome": "terminal", "failures": [{"category": "tool"}]},
            "failures[0].mode: missing",
        ),
    ],
)
def test_bad_fields_name_the_line_and_the_field(tmp_path: Path, obj: object, message: str) -> None:
    bad = tmp_path / "r.jsonl"
    bad.write_text(run_line() + "\n" + json.dumps(obj) + "\n")
    with pytest.raises(InputError) as info:
        load_results([bad])
    assert str(info.value) == f"{bad}: line 2: {message}"


# ---------------------------------------------------------------------------------------------------- aggregation


def test_summary_counts_the_sample_exactly() -> None:
    s = summarize(load_results([SAMPLE]), top=3)
    assert s.runs == 12
    assert s.outcomes == {"success": 3, "recovered": 3, "terminal": 6}
    assert s.failures == Tally(terminal=8, recovered=7, runs_terminal=5, runs_recovered=6, runs=8)
    assert [(c.category, c.tally) for c in s.categories] == [
        ("workflow", Tally(6, 1, 4, 1, 5)),
        ("tool", Tally(1, 3, 1, 3, 4)),
        ("user_interaction", Tally(1, 1, 1, 1, 2)),
        ("system", Tally(0, 1, 0, 1, 1)),
        ("evaluator", Tally(0, 1, 0, 1, 1)),
    ]
    assert [(m.category, m.mode, m.tally.terminal, m.tally.recovered) for m in s.modes] == [
        ("workflow", "policy_violation", 3, 0),
        ("workflow", "missing_action", 1, 0),
        ("workflow", "unnecessary_transfer", 1, 0),
        ("workflow", "wrong_action", 1, 0),
        ("workflow", "loop", 0, 1),
        ("tool", "wrong_arguments", 1, 3),
        ("user_interaction", "wrong_information", 1, 1),
        ("system", "tool_failure", 0, 1),
        ("evaluator", "evaluator_error", 0, 1),
    ]
    assert s.distinct_critiques == 11
    assert [(c.count, c.runs, c.terminal, c.modes) for c in s.critiques] == [
        (3, 3, 1, ("tool.wrong_arguments",)),
        (2, 2, 2, ("workflow.policy_violation",)),
        (2, 2, 1, ("user_interaction.wrong_information",)),
    ]
    # one real example per group, as written
    assert (
        s.critiques[0].example
        == "Call get_order_details with the order id the user gave ('#W2378156'), not '#W2378165'."
    )
    assert s.critiques[2].example == "Tell the user the refund is $54.04 only after a tool result shows it."
    assert [(f.file, f.runs, f.outcomes, f.failures) for f in s.files] == [
        (RETAIL, 7, {"success": 2, "recovered": 2, "terminal": 3}, 10),
        (AIRLINE, 5, {"success": 1, "recovered": 1, "terminal": 3}, 5),
    ]
    assert s.root_cause_steps == {3: 1, 5: 2, 6: 1, 20: 1}
    assert s.terminal_without_root_cause == 1
    assert s.root_cause_median() == 5
    assert {k: round(v, 3) for k, v in s.mean_failure_score.items()} == {
        "success": 0.057,
        "recovered": 0.35,
        "terminal": 0.86,
    }


def test_critiques_that_differ_in_numbers_and_quoted_values_group() -> None:
    a = normalize_critique("Refund $54.04 for order #W2378156 only after the tool says 'ok'.")
    b = normalize_critique('Refund $1,200.50 for order #W1 only after  the tool says "done".')
    assert a == b.replace('"…"', "'…'")
    assert normalize_critique("Stop after 3 calls.") == normalize_critique("stop after 12 calls.")
    assert normalize_critique("Call get_user first.") != normalize_critique("Call get_order first.")


def test_empty_results_make_an_empty_report(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    s = summarize(load_results([empty]))
    assert s.runs == 0 and s.modes == () and s.critiques == ()
    text = render_text(s)
    assert "0 runs evaluated" in text and "no failures" in text


# ---------------------------------------------------------------------------------------------------- text


def test_text_report_has_the_study_table() -> None:
    text = render_text(summarize(load_results([SAMPLE]), top=3))
    lines = text.splitlines()
    start = lines.index("Failure modes: 15 failures (8 terminal, 7 recovered) in 8 runs")
    assert lines[start + 1 : start + 19] == [
        "                                   failures                runs affected",
        "  category / mode         terminal  recovered  total  terminal  recovered  any",
        "  workflow                       6          1      7         4          1    5",
        "    policy_violation             3          0      3         3          0    3",
        "    missing_action               1          0      1         1          0    1",
        "    unnecessary_transfer         1          0      1         1          0    1",
        "    wrong_action                 1          0      1         1          0    1",
        "    loop                         0          1      1         0          1    1",
        "  tool                           1          3      4         1          3    4",
        "    wrong_arguments              1          3      4         1          3    4",
        "  user_interaction               1          1      2         1          1    2",
        "    wrong_information            1          1      2         1          1    2",
        "  system                         0          1      1         0          1    1",
        "    tool_failure                 0          1      1         0          1    1",
        "  evaluator                      0          1      1         0          1    1",
        "    evaluator_error              0          1      1         0          1    1",
        "  all                            8          7     15         5          6    8",
        "",
    ]
    assert "\n".join(lines[:8]) == "\n".join(
        [
            "12 runs evaluated, from " + str(SAMPLE),
            "",
            "Run outcomes",
            "  outcome    runs   share  mean failure score",
            "  success       3   25.0%                0.06",
            "  recovered     3   25.0%                0.35",
            "  terminal      6   50.0%                0.86",
            "  all          12  100.0%",
        ]
    )
    assert "Most frequent critiques (3 of 11 distinct)" in lines
    assert (
        '  #2      2     2         2  workflow.policy_violation           Ask for an explicit "yes" before calling '
        "cancel_reservation on reservation 'ZFA04Y'." in lines
    )
    assert (
        "  tau2/retail-gpt-4.1.json                      7        2          2         3       42.9%        10" in lines
    )
    assert "Root cause: step of the earliest terminal failure, in 5 runs (median step 5)" in lines
    assert "\x1b[" not in text


def test_text_colours_only_when_asked() -> None:
    s = summarize(load_results([SAMPLE]))
    coloured = render_text(s, color=True)
    assert "\x1b[31m" in coloured  # terminal counts in red
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render_text(s)  # the same layout once styles are removed


# ---------------------------------------------------------------------------------------------------- command


def test_command_prints_text_and_writes_the_page(tmp_path: Path) -> None:
    page = tmp_path / "out" / "report.html"
    code, out, err = invoke(str(SAMPLE), str(SAMPLE), "--html", str(page), "--top", "2")
    assert code == 0, err
    assert out.startswith("24 runs evaluated")  # several files: here the same one twice
    assert "Most frequent critiques (2 of 11 distinct)" in out and "\x1b[" not in out
    assert f"-> {page}" in err
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in page.parent.iterdir()] == ["report.html"]  # no temporary file left


def test_command_exits_2_on_bad_input_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "results.jsonl"
    bad.write_text(run_line() + "\n" + "{not json\n")
    page = tmp_path / "report.html"
    code, out, err = invoke(str(SAMPLE), str(bad), "--html", str(page))
    assert code == 2
    assert f"{bad}: line 2: not valid JSON" in err
    assert out == "" and not page.exists()
    code, _, err = invoke(str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl: cannot read" in err


def test_html_without_plotly_says_which_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "plotly" or n.startswith("plotly.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly raises ImportError
    code, _, err = invoke(str(SAMPLE), "--html", str(tmp_path / "r.html"))
    assert code == 1
    assert "otel-agent-eval[report]" in err and "plotly" in err
    assert not (tmp_path / "r.html").exists()
    assert invoke(str(SAMPLE))[0] == 0  # the text report does not need it


# ---------------------------------------------------------------------------------------------------- HTML


class _Refs(HTMLParser):
    """Every URL-carrying attribute, <link> and inline script of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster", "background") and value:
                self.refs.append((tag, name, value))
        if tag == "link":
            self.refs.append((tag, "link", str(dict(attrs))))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _nasty_results(tmp_path: Path) -> Path:
    results = tmp_path / "results.jsonl"
    extra = run_line(failures=[finding(NASTY), finding(NASTY)], index=99).replace("runs.json", "<i>runs</i>.json")
    results.write_text(SAMPLE.read_text(encoding="utf-8") + extra + "\n", encoding="utf-8")
    return results


def test_html_is_self_contained(tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    page = render_html(summarize(load_results([_nasty_results(tmp_path)])))
    parser = _Refs()
    parser.feed(page)
    # no src=, <link>, and no href= but to the page's own rows (#...): nothing to fetch
    assert parser.refs and all(tag == "a" and name == "href" and ref.startswith("#") for tag, name, ref in parser.refs)
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1  # plotly.js inlined once for the whole page
    assert page.count("Plotly.newPlot(") == 3  # modes, outcomes, root cause; the critiques are a plain table
    rest = page.replace(bundle, "")
    assert not re.search(r"https?:|//cdn|@import|url\(|@font-face", rest, re.IGNORECASE)


def test_html_escapes_text_from_the_results(tmp_path: Path) -> None:
    page = render_html(summarize(load_results([_nasty_results(tmp_path)])))
    for raw in ("<script>alert", "<b>order</b>", "<img src=x", "<i>runs</i>"):
        assert raw not in page
    assert (
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Use &lt;b&gt;order&lt;/b&gt; &amp; &quot;quotes&quot;"
        in page
    )
    assert "&lt;i&gt;runs&lt;/<wbr>i&gt;.json" in page  # a path may break after a slash
    # in the charts' JSON too: escaped for plotly's labels, and no "<" that could close the script
    scripts = [s for s in _script_bodies(page) if "Plotly.newPlot" in s]
    assert scripts and all("<" not in s for s in scripts)
    # a mode name is drawn by plotly (an axis label): escaped for its pseudo-HTML too
    hostile = tmp_path / "mode.jsonl"
    hostile.write_text(run_line(failures=[finding("x", mode="<b>bold</b>")]) + "\n")
    charts = [s for s in _script_bodies(render_html(summarize(load_results([hostile])))) if "Plotly.newPlot" in s]
    assert all("<" not in s for s in charts)
    assert any("\\u0026lt;b\\u0026gt;bold" in s or "&lt;b&gt;bold" in s for s in charts)


def _script_bodies(page: str) -> list[str]:
    parser = _Refs()
    parser.feed(page)
    return parser.scripts


# ---------------------------------------------------------------------------------------------------- Chromium


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
    # nothing may be fetched: every host is unresolvable and every request goes to a dead proxy
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install-system-deps.sh` (as root) to install it")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    result = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _png_pixels(path: Path) -> tuple[int, int, collections.Counter[tuple[int, int, int]]]:
    """Width, height and a histogram of RGB colours of an 8-bit, non-interlaced RGB(A) PNG (as Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type, interlace)
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    assert len(raw) == height * (stride + 1)
    previous = bytearray(stride)
    colours: collections.Counter[tuple[int, int, int]] = collections.Counter()
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + previous[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(zip(line[0::bpp], line[1::bpp], line[2::bpp], strict=True))
        previous = line
    return width, height, colours


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = int(hex_colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 255, value & 255


def test_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, _, err = invoke(str(_nasty_results(tmp_path)), "--html", str(page), "--top", "20")
    assert code == 0, err
    url = page.resolve().as_uri()

    dom = _chromium(tmp_path, "--dump-dom", url).stdout
    charts = dict(re.findall(r'<div id="(chart-[a-z-]+)" class="([^"]*)"', dom))
    assert set(charts) == {"chart-modes", "chart-outcomes", "chart-root-cause"}
    assert all("js-plotly-plot" in cls for cls in charts.values()), charts  # plotly.js ran on every chart
    sections = {name: dom[dom.index(f'id="{name}"') :] for name in charts}
    for name, html in sections.items():
        assert 'class="main-svg"' in html[:200_000], name
    modes = sections["chart-modes"][: sections["chart-modes"].index('id="chart-outcomes"')]
    assert modes.count('class="trace bars"') == 2  # terminal and recovered
    assert modes.count('class="point"') == 18  # one bar for each (mode, outcome) pair: 9 modes x 2
    for mode in ("policy_violation", "wrong_arguments", "evaluator_error"):
        assert f">{mode}<" in modes  # the axis labels were drawn
    outcomes = sections["chart-outcomes"][: sections["chart-outcomes"].index('id="critiques"')]
    assert outcomes.count('class="slice"') == 3
    critiques = dom[dom.index('id="critiques"') : dom.index('id="chart-root-cause"')]
    assert critiques.count('<span class="critique">') == 12 and "cancel_reservation" in critiques
    # the HTML-looking critique is shown as text, not turned into elements
    assert "<img" not in dom and "<b>order</b>" not in dom and "alert('x')</script>" not in dom
    assert "&lt;b&gt;order&lt;/b&gt;" in critiques

    png = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,4000", url)
    assert png.exists() and png.stat().st_size > 30_000
    width, height, colours = _png_pixels(png)
    assert (width, height) == (1280, 4000)
    assert len(colours) > 200  # not blank, not uniform
    # the charts were painted: the bars and the donut fill far more pixels in the outcome colours than the
    # page's own decorations in those colours (card borders, dots: under 2,000 pixels each)
    assert colours[_rgb(COLOURS["terminal"])] > 20_000
    assert colours[_rgb(COLOURS["recovered"])] > 15_000
    assert colours[_rgb(COLOURS["success"])] > 5_000


def test_a_results_line_nested_too_deep_is_a_clear_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from otel_agent_eval.cli import main

    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    result = CliRunner().invoke(main, ["report", str(deep)])
    assert result.exit_code == 2 and str(deep) in result.stderr and "nested deeper" in result.stderr
