"""A real Prometheus on loopback scrapes a running processor and fires the terminal-failure alert after
injected terminal failures. The rules are the shipped ones with their windows scaled from minutes and days to
seconds (the promtool unit tests check the shipped rules at their real durations)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_processor import TOOLS, config, free_port, wait_for

from otel_agent_eval.instrument import agent_run
from otel_agent_eval.processor import Processor

# Real duration -> test duration. Only the shipped rules' own tokens are replaced, in this order: [5m] before
# [1d] becomes [5m], or the baseline would shrink to [10s].
SCALE = [
    (r"\[15m\]", "[30s]"),
    (r"offset 15m", "offset 30s"),
    (r"\[5m\]", "[10s]"),
    (r"\[1d\]", "[5m]"),
    (r"for: \d+m", "for: 3s"),
    (r"interval: 1m", "interval: 1s"),
]


def scaled_rules(path: Path) -> Path:
    text = (ROOT / "alerts" / "agent-eval-rules.yaml").read_text()
    for pattern, replacement in SCALE:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"the shipped rules no longer contain {pattern}: update SCALE"
    path.write_text(text)
    return path


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    yield from prometheus_server(tmp_path)


def prometheus_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``start(target)`` runs a real Prometheus (1s scrapes and rule evaluations, the scaled rules) scraping
    ``target`` and returns its address; each is stopped when the generator is closed. The body of the
    ``prometheus`` fixture, for other test modules' fixtures (``yield from prometheus_server(tmp_path)``)."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run `bash scripts/install-system-deps.sh` (as root)"
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        rules = scaled_rules(tmp_path / "rules.yaml")
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{json.dumps(str(rules))}]\n"
            f"scrape_configs: [{{job_name: agent-eval, static_configs: [{{targets: [{json.dumps(target)}]}}]}}]\n"
        )
        address = f"127.0.0.1:{free_port()}"
        started.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address={address}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 - closed with the process
            )
        )
        wait_for(lambda: _get(f"http://{address}/-/ready") is not None, timeout=60)
        return f"http://{address}"

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
    except OSError:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


def _diagnosis(api: str) -> dict[str, Any]:
    queries = [
        "agent_eval_traces_total",
        "agent:agent_eval_traces:increase15m",
        "agent:agent_eval_terminal_share:ratio15m",
        "agent:agent_eval_terminal_share:baseline1d",
    ]
    out: dict[str, Any] = {"alerts": (_get(f"{api}/api/v1/alerts") or {}).get("data")}
    for expr in queries:
        out[expr] = [(r["metric"], r["value"][1]) for r in query(api, expr)]
    return out


def query(api: str, expr: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus' HTTP API: the result's series (``metric``, ``value``); none if the
    query failed."""
    result = _get(f"{api}/api/v1/query?query={urllib.request.quote(expr)}") or {}
    return list(result.get("data", {}).get("result", [])) if isinstance(result, dict) else []


def _firing(api: str, name: str) -> list[dict[str, Any]]:
    data = _get(f"{api}/api/v1/alerts") or {}
    alerts = data.get("data", {}).get("alerts", []) if isinstance(data, dict) else []
    return [a for a in alerts if a["labels"].get("alertname") == name and a["state"] == "firing"]


def test_prometheus_fires_on_a_terminal_failure_spike(
    tmp_path: Path, running: Callable[..., Processor], prometheus: Callable[[str], str]
) -> None:
    processor = running(config(tmp_path, quiet_period=0.1))
    api = prometheus(processor.admin.endpoint)  # type: ignore[union-attr]
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=processor.grpc.endpoint, insecure=True))  # type: ignore[union-attr]
    )

    def run(fail: bool) -> None:
        reason = "because" if fail else "no longer needed"  # "because" breaks the tool's schema: terminal
        with agent_run("shop", tool_definitions=TOOLS, tracer_provider=provider) as r:
            r.user_message("Cancel order #1, I no longer need it.")
            with r.chat(model="m") as call:
                call.set_response(
                    tool_calls=[{"id": "c1", "name": "cancel_order", "arguments": {"order_id": "#1", "reason": reason}}]
                )

    # A baseline: a run a second, none failing, long enough for the scaled window and its offset.
    baseline_until = time.monotonic() + 40
    while time.monotonic() < baseline_until:
        run(fail=False)
        time.sleep(1.0)
    assert not _firing(api, "AgentTerminalFailureSpike")
    # Then a spike: most runs fail, with traffic well above the minimum.
    for _ in range(30):
        run(fail=True)
    try:
        wait_for(lambda: bool(_firing(api, "AgentTerminalFailureSpike")), timeout=90)
    except AssertionError:
        raise AssertionError(f"the alert did not fire; Prometheus saw: {_diagnosis(api)}") from None
    [alert] = _firing(api, "AgentTerminalFailureSpike")
    assert alert["labels"]["agent"] == "shop" and alert["labels"]["severity"] == "critical"
    assert "shop" in alert["annotations"]["summary"]
    provider.shutdown()
