"""End to end into Jaeger: recorded runs -> ``replay`` -> ``serve`` -> Jaeger v2, then Jaeger's HTTP query API.

Jaeger (v2, the Collector-based all-in-one, in-memory store) is built from the Go module proxy by
scripts/build-jaeger.sh into a cache outside the repo (a cold build takes minutes; scripts/test.sh builds it
before the tests) and runs with collector-config/jaeger.yaml on free loopback ports. The labelled spans are
looked up as a user would: ``/api/traces?service=...&tags={"agent_eval.trace.outcome":"terminal"}`` and by
``agent_eval.failure.mode``; span events come back as Jaeger ``logs``. ``replay`` moves each run to end now,
so Jaeger's search window (start/end, or the UI's default "last hour") finds them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TAU2, TAU_BENCH
from helpers import stop_process
from test_processor import config, free_port, wait_for

from otel_agent_eval.processor import Processor

SERVICE = "otel-agent-eval-import"  # the resource's service.name on replayed runs
Trace = dict[str, Any]


class Jaeger:
    def __init__(self, binary: Path, tmp_path: Path) -> None:
        self.otlp, self.query = free_port(), free_port()
        self.log = tmp_path / "jaeger.log"
        env = {
            **os.environ,
            "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.otlp}",
            "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{self.query}",
            "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        }
        self.process = subprocess.Popen(
            [str(binary), "--config", str(ROOT / "collector-config" / "jaeger.yaml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),  # noqa: SIM115 - closed with the process
        )
        try:
            wait_for(lambda: _listening(self.otlp) and _listening(self.query), timeout=60)
        except AssertionError:
            self.stop()
            raise AssertionError(f"Jaeger did not start:\n{self.log.read_text()[-3000:]}") from None

    def traces(self, since_ns: int, **tags: str) -> list[Trace]:
        query = {
            "service": SERVICE,
            "start": str(since_ns // 1000 - 60_000_000),  # microseconds
            "end": str(time.time_ns() // 1000 + 60_000_000),
            "limit": "1000",
        }
        if tags:
            query["tags"] = json.dumps(tags)
        url = f"http://127.0.0.1:{self.query}/api/traces?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return list(json.load(response)["data"] or [])

    def stop(self) -> None:
        stop_process(self.process)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def jaeger(jaeger_binary: Path, tmp_path: Path) -> Iterator[Jaeger]:
    server = Jaeger(jaeger_binary, tmp_path)
    yield server
    server.stop()


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def _root(trace: Trace) -> dict[str, Any]:
    [root] = [s for s in trace["spans"] if not s.get("references")]
    return root


def _recorded_runs(tmp_path: Path) -> list[Path]:
    """A few runs of each format; τ-bench runs 10 and 13 end in a terminal failure, 11 recovers."""
    bench = json.loads(TAU_BENCH.read_text())[8:14]
    tau2 = json.loads(TAU2.read_text())
    tau2["simulations"] = tau2["simulations"][:3]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "tau2.json").write_text(json.dumps(tau2))
    return [tmp_path / "bench.json", tmp_path / "tau2.json"]


def _replay(files: list[Path], endpoint: str) -> None:
    tools = str(TAU_BENCH.parent / "retail-tools.json")
    for file in files:  # τ² files carry no tool definitions: the retail tools beside the τ-bench data
        extra = ["--tools", tools] if file.name == "tau2.json" else []
        done = subprocess.run(
            [sys.executable, "-m", "otel_agent_eval.cli", "replay", str(file), "--endpoint", endpoint, *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr


def _check_labels_arrived(jaeger: Jaeger, since: int, runs: int) -> None:
    def everything() -> list[Trace]:
        return jaeger.traces(since)

    wait_for(lambda: len(everything()) >= runs, timeout=90)
    traces = everything()
    assert len(traces) == runs
    outcomes: dict[str, str] = {}
    modes: dict[str, set[str]] = {}
    for trace in traces:
        root = _tags(_root(trace))
        # The root span's summary, every attribute of it.
        for key in ("outcome", "failure_score", "failures", "terminal_failures", "suspicions"):
            assert f"agent_eval.trace.{key}" in root, (key, root)
        outcomes[trace["traceID"]] = root["agent_eval.trace.outcome"]
        events = 0
        for span in trace["spans"]:
            tags = _tags(span)
            results = [
                log
                for log in span["logs"]
                if {"key": "event", "type": "string", "value": "gen_ai.evaluation.result"} in log["fields"]
            ]
            events += len(results)
            if "agent_eval.failure.mode" in tags:
                modes.setdefault(tags["agent_eval.failure.mode"], set()).add(trace["traceID"])
                assert tags["agent_eval.failure.outcome"] and tags["agent_eval.failure.category"]
                assert results, span  # the located failure's event came with it
                fields = [{f["key"]: f["value"] for f in log["fields"]} for log in results]
                assert any(f.get("gen_ai.evaluation.name") for f in fields), fields
        assert (events > 0) == (int(root["agent_eval.trace.failures"]) > 0), (events, root)
    # Jaeger finds them by tag, as a user would.
    assert "terminal" in outcomes.values(), outcomes
    terminal = {t["traceID"] for t in jaeger.traces(since, **{"agent_eval.trace.outcome": "terminal"})}
    assert terminal == {t for t, o in outcomes.items() if o == "terminal"}
    assert modes, "no span carries a failure mode"
    for mode, expected in modes.items():
        found = {t["traceID"] for t in jaeger.traces(since, **{"agent_eval.failure.mode": mode})}
        assert found == expected, mode


def test_replayed_runs_labelled_into_jaeger(tmp_path: Path, running: Callable[..., Processor], jaeger: Jaeger) -> None:
    processor = running(
        config(tmp_path, grpc_endpoint=f"127.0.0.1:{free_port()}", downstream=f"grpc://127.0.0.1:{jaeger.otlp}")
    )
    since = time.time_ns()
    _replay(_recorded_runs(tmp_path), processor.grpc.endpoint)  # type: ignore[union-attr]
    _check_labels_arrived(jaeger, since, runs=9)


def test_through_the_collector_into_jaeger(
    tmp_path: Path, running: Callable[..., Processor], jaeger: Jaeger, collector_binary: Path
) -> None:
    """The deployment of collector-config/pipeline.yaml: app -> Collector -> serve -> Collector -> Jaeger."""
    app, labelled = free_port(), free_port()
    processor = running(
        config(tmp_path, grpc_endpoint=f"127.0.0.1:{free_port()}", downstream=f"grpc://127.0.0.1:{labelled}")
    )
    env = {
        **os.environ,
        "APP_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{app}",
        "APP_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "PROCESSOR_OTLP_ENDPOINT": processor.grpc.endpoint,  # type: ignore[union-attr]
        "LABELLED_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{labelled}",
        "DOWNSTREAM_OTLP_ENDPOINT": f"127.0.0.1:{jaeger.otlp}",
        "COLLECTOR_METRICS_PORT": str(free_port()),
    }
    log = tmp_path / "collector.log"
    with open(log, "w") as stderr:
        collector = subprocess.Popen(
            [str(collector_binary), "--config", str(ROOT / "collector-config" / "pipeline.yaml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        try:
            wait_for(lambda: _listening(app) and _listening(labelled), timeout=60)
        except AssertionError:
            raise AssertionError(f"the Collector did not start:\n{log.read_text()[-3000:]}") from None
        since = time.time_ns()
        _replay(_recorded_runs(tmp_path), f"127.0.0.1:{app}")
        _check_labels_arrived(jaeger, since, runs=9)
    finally:
        stop_process(collector)
