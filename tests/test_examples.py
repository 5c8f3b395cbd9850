"""The README's main-job command and the examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from test_processor import free_port


def test_main_job_script(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "AGENT_EVAL_DEMO_PORT": str(free_port())}
    done = subprocess.run(["bash", "scripts/run.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"imported 2 runs -> {tmp_path}/airline.json" in done.stderr
    assert "execute_tool cancel_order  ✗ Error: order 2077 not found" in out  # the span trees
    assert done.stderr.count("sent 2 runs -> 127.0.0.1:") == 3  # replayed into serve
    listing = out[out.index("trace id  ") :].splitlines()
    assert sum(1 for line in listing[1:8] if len(line.split()[0]) == 32) == 7  # 6 recorded runs + the example agent
    assert "shop-agent" in out
    assert "[terminal wrong_arguments]" in out and "outcome terminal" in out  # one trace shown with its labels
    assert "7 runs evaluated" in out and "Failure modes" in out
    assert (tmp_path / "report.html").stat().st_size > 100_000  # the page, with its chart library inlined


def test_manual_agent_example() -> None:
    done = subprocess.run(
        [sys.executable, "examples/manual_agent.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        '├── [0] user_message  "Can you cancel order #1042?"',
        '├── [1] chat scripted-model  → get_order(order_id="#1042")',
        '├── [2] execute_tool get_order  ← {"order_id": "#1042", "status": "pending", "total": 59.9}',
        '└── [3] chat scripted-model  "Order #1042 is pending (59.90). Shall I cancel it?"',
    ]


def test_customer_service_agent_fails_without_the_guard_and_recovers_with_it() -> None:
    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "examples/customer_service_agent.py", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OTEL_EXPORTER"))},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    without = run("--no-guard")
    assert "order status: pending" in without and "outcome: terminal" in without
    assert "terminal user_interaction.wrong_information" in without
    with_guard = run()
    assert "revisions: 1" in with_guard and "order status: cancelled" in with_guard
    assert "outcome: recovered" in with_guard and "recovered tool.wrong_arguments" in with_guard


def test_unmodified_agents_on_each_sdk_are_evaluated(tmp_path: Path) -> None:
    """examples/unmodified: agents on the bare OpenAI and Anthropic SDKs and on LangGraph, run under
    `opentelemetry-instrument` (the entry points, the OTel distro, OTLP export) into `serve`: each is one
    trace, evaluated and labelled with the failure the scripted model planted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "examples/unmodified/run.py", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr + (tmp_path / "serve.log").read_text()
    listing = done.stdout[done.stdout.index("trace id  ") :].splitlines()[1:]
    assert len(listing) == 3  # one trace per agent, no more (no call recorded twice, no run in pieces)
    assert all(" terminal " in line and "tool.wrong_arguments" in line for line in listing)
