"""The README's main-job command and the examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_main_job_script(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", "scripts/run.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert f"imported 2 runs -> {tmp_path}/airline.json" in done.stderr
    assert done.stdout.count("\ntrace ") + done.stdout.startswith("trace ") == 6
    assert "execute_tool cancel_order  ✗ Error: order 2077 not found" in done.stdout
    assert f"evaluated 6 runs -> {tmp_path}/results.jsonl" in done.stderr
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6
    assert "6 runs evaluated" in done.stdout and "Failure modes" in done.stdout
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
