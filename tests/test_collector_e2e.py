"""End to end through a real OpenTelemetry Collector (built with the Collector Builder) with two processor
replicas behind its load-balancing exporter: every span labelled, each trace judged whole by one replica."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import stop_process
from test_processor import config, free_port, metric_total, send_runs, wait_for

from otel_agent_eval.ingest.otlp import read_otlp_json
from otel_agent_eval.ingest.span_record import records_from_request
from otel_agent_eval.processor import Processor


@pytest.fixture
def collector(collector_binary: Path, tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Path]]:
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> Path:
        out = tmp_path / "labelled.jsonl"
        full_env = {
            **os.environ,
            **env,
            "LABELLED_TRACES_FILE": str(out),
            "DOWNSTREAM_EXPORTER": "debug",
            "COLLECTOR_METRICS_PORT": str(free_port()),
        }
        process = subprocess.Popen(
            [str(collector_binary), "--config", str(ROOT / "collector-config" / "loadbalancing.yaml")],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "collector.log", "w"),  # noqa: SIM115 - closed with the process
            text=True,
        )
        started.append(process)
        return out

    yield start
    for process in started:
        stop_process(process)


def test_two_replicas_behind_the_load_balancer(
    tmp_path: Path, running: Callable[..., Processor], collector: Callable[[dict[str, str]], Path]
) -> None:
    app, labelled = free_port(), free_port()
    replicas = [
        running(
            config(
                tmp_path / f"r{i}", grpc_endpoint=f"127.0.0.1:{free_port()}", downstream=f"grpc://127.0.0.1:{labelled}"
            )
        )
        for i in (1, 2)
    ]
    out = collector(
        {
            "APP_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{app}",
            "APP_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "LABELLED_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{labelled}",
            "PROCESSOR_1": replicas[0].grpc.endpoint,  # type: ignore[union-attr]
            "PROCESSOR_2": replicas[1].grpc.endpoint,  # type: ignore[union-attr]
        }
    )

    def listening() -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", app)) == 0

    wait_for(listening, timeout=60)
    sent = send_runs(f"127.0.0.1:{app}", runs=12)

    def records() -> list[object]:
        if not out.exists() or not out.read_text().strip():
            return []
        return [r for request in read_otlp_json(out) for r in records_from_request(request)]

    wait_for(lambda: len(records()) >= sent, timeout=90)
    spans = [r for request in read_otlp_json(out) for r in records_from_request(request)]
    assert len(spans) == len({s.span_id for s in spans}) == sent  # every span, each once
    roots = [s for s in spans if s.parent_span_id is None]
    assert len(roots) == 12 and all(r.attributes["agent_eval.trace.outcome"] == "terminal" for r in roots)
    assert sum(s.attributes.get("agent_eval.failure.mode") == "wrong_arguments" for s in spans) == 12
    # Each trace was judged whole by one replica: had a trace been split, both halves would be evaluated, and
    # the replicas would count more than 12 runs between them. Both replicas had a share.
    evaluated = [int(metric_total(p, "agent_eval_traces_total")) for p in replicas]
    assert sum(evaluated) == 12 and all(n > 0 for n in evaluated), evaluated
