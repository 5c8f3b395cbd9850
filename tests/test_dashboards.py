"""The Grafana dashboard in dashboards/: what its generator makes now, and every panel's query returns data.

The live test runs a real ``serve`` (in-process), feeds it real recorded runs (``otel-agent-eval replay``) and the
guarded example agent (examples/customer_service_agent.py, the in-loop guard sending a step back), in front of a
downstream that refuses that agent's spans for good (dead letters, export failures) and, at the end, holds
everything (the queue fills). A real Prometheus scrapes it every second with the shipped alert rules loaded
(scaled to seconds, as in tests/test_alerts_prometheus.py), and each panel target of the committed JSON, its
dashboard variables substituted, goes through Prometheus' HTTP API and must return a series with a value above 0.
Another sends real runs through ``serve`` into a real Jaeger and follows every agent panel's Jaeger link, filled in
as Grafana does for each series, to the runs it must find.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from conftest import ROOT
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_receiver import OtlpReceiver
from test_alerts_prometheus import _get, prometheus_server, query
from test_jaeger_e2e import SERVICE, Jaeger, _recorded_runs, _replay
from test_processor import config, metric_total, wait_for

from otel_agent_eval import semconv as sc
from otel_agent_eval.processor import Processor

DASHBOARD = ROOT / "dashboards" / "agent-eval.json"
GENERATOR = ROOT / "dashboards" / "generate.py"
GUARDED_AGENT = "shop-agent"  # examples/customer_service_agent.py: its service.name and its agent's name

# The dashboard's variables as a user with everything selected sees them (Grafana's "All" is the regex `.*`), and
# $__rate_interval long enough to span the test's feeds (Grafana makes it at least 4 scrape intervals).
VARIABLES = {"agent": ".*", "job": ".*", "outcome": ".*", "__rate_interval": "2m"}
Panel = dict[str, Any]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def panels(board: dict[str, Any]) -> list[Panel]:
    return [p for p in board["panels"] if p["type"] != "row"]


def substituted(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"a variable the test does not know: {name} in {expr}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(sys.version_info < (3, 11), reason="grafana-foundation-sdk needs Python 3.11")
def test_the_committed_files_are_what_the_generator_makes() -> None:
    outputs: dict[Path, str] = _generator().outputs()
    assert DASHBOARD in outputs
    for path, text in outputs.items():
        assert path.exists(), f"{path} is missing: run `.venv/bin/python dashboards/generate.py`"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is not current: run `.venv/bin/python dashboards/generate.py`"
        )


# ------------------------------------------------------------------------------------------ trace-store links
AGENT = "${__field.labels.agent:percentencode}"


def _link_labels(url: str) -> set[str]:
    return set(re.findall(r"\$\{__field\.labels\.(\w+)", url))


def _jaeger_query(url: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The link's query parameters, and its tags with Grafana's label placeholders left in."""
    assert url.startswith("${jaeger_url}/search?"), url
    params = urllib.parse.parse_qs(url.split("?", 1)[1])
    [tags] = params["tags"]
    return params, dict(json.loads(tags))


def _tempo_query(url: str) -> str:
    assert url.startswith("/explore?"), url
    [panes] = urllib.parse.parse_qs(url.split("?", 1)[1])["panes"]
    [pane] = json.loads(panes).values()
    [target] = pane["queries"]
    assert target["queryType"] == "traceql" and target["datasource"] == {"type": "tempo", "uid": "${tempo}"}
    return str(target["query"])


def _reads(panel: Panel, metric: str) -> bool:
    return any(metric in target["expr"] for target in panel["targets"])


def test_every_failure_panel_links_to_jaeger_and_tempo_with_the_labels_the_processor_writes() -> None:
    written = {v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str)}
    # The panels of agents' outcomes and failures: those the agent variable filters.
    failure_panels = [p for p in panels(dashboard()) if _reads(p, 'agent=~"$agent"')]
    assert len(failure_panels) >= 6, [p["title"] for p in failure_panels]
    for panel in failure_panels:
        links = panel["fieldConfig"]["defaults"].get("links", [])
        jaeger = [link["url"] for link in links if link["title"].startswith("Jaeger")]
        tempo = [link["url"] for link in links if link["title"].startswith("Tempo")]
        assert len(jaeger) == len(tempo) == 1, panel["title"]
        params, tags = _jaeger_query(jaeger[0])
        assert params["service"] == ["${service:percentencode}"]
        assert params["start"] == ["${__from}000"] and params["end"] == ["${__to}000"]  # Jaeger: microseconds
        assert set(tags) <= written, f"{panel['title']}: attributes the processor does not write: {tags}"
        assert sc.AGENT_EVAL_TRACE_OUTCOME in tags or sc.AGENT_EVAL_FAILURE_OUTCOME in tags, panel["title"]
        traceql = _tempo_query(tempo[0])
        for key, value in tags.items():  # the same conditions in TraceQL
            assert f'span.{key} = "{value}"' in traceql, (panel["title"], traceql)
        # Both filter to the series' agent: the processor writes it on every span it labels
        assert tags[sc.AGENT_EVAL_AGENT_LABEL] == AGENT, panel["title"]


def test_alert_panels_are_the_ones_the_rules_link_to() -> None:
    """The alert rules' `dashboard` annotations name this dashboard and a panel of it that reads what the alert
    reads (the rest of the annotations is checked by tests/test_alert_rules.py)."""
    import yaml

    board = dashboard()
    by_id = {p["id"]: p for p in panels(board)}
    rules = yaml.safe_load((ROOT / "alerts" / "agent-eval-rules.yaml").read_text(encoding="utf-8"))
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert alerts
    for alert in alerts:
        link = urllib.parse.urlsplit(alert["annotations"]["dashboard"])
        assert link.path.startswith(f"/d/{board['uid']}/"), alert["alert"]
        [panel_id] = urllib.parse.parse_qs(link.query)["viewPanel"]
        panel = by_id[int(panel_id)]
        read = set(re.findall(r"[a-z_]+:[a-z_0-9]+:[a-z_0-9]+|agent_eval_\w+", alert["expr"]))
        shown = {name for name in read if _reads(panel, name)}
        assert shown, f"{alert['alert']} links to {panel['title']!r}, which shows none of {sorted(read)}"


# ------------------------------------------------------------------------------------------------- live test
class Downstream(OtlpReceiver):
    """Refuses the guarded agent's spans for good (INVALID_ARGUMENT: dead letters) and, while ``hold`` is set,
    everything, retryably (UNAVAILABLE: the outbox fills)."""

    def __init__(self) -> None:
        super().__init__(fail=self._answer)
        self.hold = threading.Event()

    def _answer(self, request: ExportTraceServiceRequest) -> tuple[Any, ...] | None:
        if self.hold.is_set():
            return (grpc.StatusCode.UNAVAILABLE, "held by the test")
        services = {
            kv.value.string_value
            for spans in request.resource_spans
            for kv in spans.resource.attributes
            if kv.key == sc.SERVICE_NAME
        }
        if GUARDED_AGENT in services:
            return (grpc.StatusCode.INVALID_ARGUMENT, f"the test refuses the spans of {GUARDED_AGENT}")
        return None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    yield from prometheus_server(tmp_path)


def _guarded_run(endpoint: str, *, guard: bool = True) -> None:
    """The example agent with the in-loop guard (offline, its scripted model): the guard sends its wrong
    cancel_order back and the run recovers, a guard recovery. Without the guard its run ends terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OTEL_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://{endpoint}"
    done = subprocess.run(
        [sys.executable, "examples/customer_service_agent.py", *([] if guard else ["--no-guard"])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"outcome: {'recovered' if guard else 'terminal'}" in done.stdout, done.stdout


def _value(api: str, expr: str) -> float:
    return sum(float(series["value"][1]) for series in query(api, expr))


def _lacking(api: str, targets: list[tuple[Panel, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The targets whose query returns no series with a value above 0, with what they returned."""
    lacking = {}
    for panel, target in targets:
        result = query(api, substituted(target["expr"]))
        if not any(float(series["value"][1]) > 0 for series in result):
            lacking[f"{panel['title']} [{target['refId']}]: {substituted(target['expr'])}"] = result
    return lacking


def test_every_panel_query_returns_data_from_a_real_prometheus(
    tmp_path: Path, running: Callable[..., Processor], prometheus: Callable[[str], str]
) -> None:
    board = dashboard()
    targets = [(panel, target) for panel in panels(board) for target in panel["targets"]]
    assert len(targets) >= 15
    with Downstream() as downstream:
        processor = running(
            config(tmp_path, quiet_period=0.1, downstream=f"grpc://{downstream.endpoint}", export_min_backoff=0.01)
        )
        endpoint = processor.grpc.endpoint  # type: ignore[union-attr]
        api = prometheus(processor.admin.endpoint)  # type: ignore[union-attr]
        wait_for(lambda: _value(api, 'up{job="agent-eval"}') == 1, timeout=60)
        runs = _recorded_runs(tmp_path)

        def feed(number: int) -> None:
            """Recorded runs and a guarded run; returns once Prometheus has scraped their traces (10 a feed)."""
            _replay(runs, endpoint)
            _guarded_run(endpoint)
            wait_for(lambda: _value(api, "sum(agent_eval_traces_total)") == 10 * number, timeout=60)

        # Prometheus sees an increase only between two scrapes of a series: the first feed creates the series
        # (some, like the guard recoveries, with their first count in them), the second increases them.
        feed(1)
        feed(2)
        assert _value(api, "sum(agent_eval_deadletters_total)") >= 2, "the guarded agent's spans were not refused"
        # The baseline (scaled: the previous 5m, up to 30s ago) needs the second feed out of the current window.
        wait_for(lambda: bool(query(api, "agent:agent_eval_terminal_share:baseline1d")), timeout=120)
        # The last feed's spans wait in the outbox: queue depth (a gauge) is above 0 only while they do.
        downstream.hold.set()
        feed(3)
        with contextlib.suppress(AssertionError):  # reported below, with what each lacking query returned
            wait_for(lambda: not _lacking(api, targets), timeout=60)
        lacking = _lacking(api, targets)
        assert not lacking, f"panel queries without data: {json.dumps(lacking, indent=1)}"

        # A data link puts the series' labels in the trace store's search: every series must carry them.
        for panel, target in targets:
            links = panel["fieldConfig"]["defaults"].get("links", [])
            needed = set().union(*(_link_labels(link["url"]) for link in links))
            for series in query(api, substituted(target["expr"])):
                assert needed <= set(series["metric"]), (panel["title"], target["refId"], series["metric"])

        # The query variables' values, as Grafana's label_values(METRIC, LABEL) asks Prometheus for them.
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]).groups()  # type: ignore[union-attr]
                values = _get(f"{api}/api/v1/label/{label}/values?match[]={metric}")
                assert values["data"], variable["name"]
        agents = _get(f"{api}/api/v1/label/agent/values?match[]=agent_eval_traces_total")["data"]
        assert GUARDED_AGENT in agents, agents
        downstream.hold.clear()


# ------------------------------------------------------------------------------------------ the Jaeger links
# The raw metric behind each agent panel's series (the recording rules are made of these).
SOURCES = {
    "agent_mode:": "agent_eval_failures_total",
    "agent:": "agent_eval_traces_total",
    "agent_eval_failures_total": "agent_eval_failures_total",
    "agent_eval_traces_total": "agent_eval_traces_total",
    "agent_eval_guard_recoveries_total": "agent_eval_guard_recoveries_total",
}


def _api_search(url: str, labels: dict[str, str], jaeger: Jaeger, service: str) -> str:
    """The link as Grafana fills it in for a series with these labels, as a query of Jaeger's HTTP API (which
    takes the UI search's parameters)."""
    filled = url.replace("${jaeger_url}", f"http://127.0.0.1:{jaeger.query}")
    filled = filled.replace("${service:percentencode}", urllib.parse.quote(service, safe=""))
    filled = filled.replace("${__from}000", str((time.time_ns() // 1000) - 600_000_000))
    filled = filled.replace("${__to}000", str((time.time_ns() // 1000) + 60_000_000))
    for label, value in labels.items():
        filled = filled.replace(f"${{__field.labels.{label}:percentencode}}", urllib.parse.quote(value, safe=""))
    assert "${" not in filled, filled
    return filled.replace("/search?", "/api/traces?", 1)


def test_the_jaeger_links_find_the_runs_of_their_series(
    tmp_path: Path, running: Callable[..., Processor], jaeger_binary: Path
) -> None:
    """Real runs through a real `serve` into a real Jaeger: for every series of every agent panel (the label
    values the processor's metrics hold), the panel's Jaeger link, filled in as Grafana does, finds runs."""
    jaeger = Jaeger(jaeger_binary, tmp_path)
    try:
        processor = running(config(tmp_path, quiet_period=0.1, downstream=f"grpc://127.0.0.1:{jaeger.otlp}"))
        endpoint = processor.grpc.endpoint  # type: ignore[union-attr]
        since = time.time_ns()
        _replay(_recorded_runs(tmp_path), endpoint)  # recorded runs name no agent: agent="unknown"
        _guarded_run(endpoint)
        _guarded_run(endpoint, guard=False)  # a terminal run of a named agent
        # every span delivered, and the replayed runs searchable (Jaeger stores what it receives asynchronously)
        wait_for(
            lambda: (
                metric_total(processor, "agent_eval_spans_exported_total")
                == metric_total(processor, "agent_eval_spans_received_total")
                and len(jaeger.traces(since)) == 9
            ),
            timeout=90,
        )
        samples = [
            (sample.name, dict(sample.labels))
            for metric in processor.registry.collect()
            for sample in metric.samples
            if sample.value > 0
        ]
        checked: Counter[str] = Counter()
        for panel in panels(dashboard()):
            [url] = [
                link["url"] for link in panel["fieldConfig"]["defaults"].get("links", []) if "Jaeger" in link["title"]
            ] or [None]
            if url is None:
                continue
            _, literal = _jaeger_query(url)
            source = next(v for k, v in SOURCES.items() if _reads(panel, k))
            for name, labels in samples:
                if name != source:
                    continue
                # a series the panel shows: consistent with the link's fixed tags (e.g. outcome "terminal")
                fixed = [v for k, v in literal.items() if k.endswith(".outcome") and "${" not in v]
                if "outcome" in labels and any(labels["outcome"] != v for v in fixed):
                    continue
                service = GUARDED_AGENT if labels["agent"] == GUARDED_AGENT else SERVICE
                search = _api_search(url, labels, jaeger, service)
                try:
                    wait_for(lambda search=search: bool(_get(search)["data"]), timeout=30)
                except AssertionError:
                    raise AssertionError(f"{panel['title']}: the Jaeger link finds no run for {labels}") from None
                checked[panel["title"]] += 1
        linked = [p["title"] for p in panels(dashboard()) if p["fieldConfig"]["defaults"].get("links")]
        assert set(checked) == set(linked) and len(linked) >= 6, checked
    finally:
        jaeger.stop()
