"""The Prometheus rules in alerts/: valid (`promtool check rules`), and their unit tests pass (`promtool test rules`).

promtool comes from Debian's `prometheus` package, which scripts/install-system-deps.sh installs; without it these
tests fail (they do not skip), so CI cannot pass with the alert rules untested.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_agent_eval.processor.metrics import METRICS

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "alerts"
RULES = ALERTS / "agent-eval-rules.yaml"
RULE_TESTS = ALERTS / "agent-eval-rules.test.yaml"

# The metrics the processor exposes, as declared once (otel_agent_eval/processor/metrics.py): the rules may read
# these and nothing else (a histogram as its _bucket, _sum and _count series).
CONTRACT_METRICS = {
    f"{m.prometheus}{suffix}"
    for m in METRICS.values()
    for suffix in (("_bucket", "_sum", "_count") if m.instrument == "histogram" else ("",))
}
EXPECTED_ALERTS = {
    "AgentTerminalFailureSpike",
    "AgentFailureModeSpike",
    "AgentEvalExportFailing",
    "AgentEvalNotEvaluating",
}
# Where the runbooks are published: the repository's docs/runbooks/, one page per alert, named after it.
RUNBOOKS = "https://github.com/otel-agent-eval/otel-agent-eval/blob/main/docs/runbooks/"
DASHBOARD = ROOT / "dashboards" / "agent-eval.json"
# Labels an alert may carry: low-cardinality only (never a trace id, a user or message text).
ALLOWED_ALERT_LABELS = {"agent", "mode", "category", "job", "instance", "severity"}


def _promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        pytest.fail(
            "promtool is missing: run `bash scripts/install-system-deps.sh` (as root) to install Debian's "
            "`prometheus` package, which provides it"
        )
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = _run("check", "rules", "--lint=all", "--lint-fatal", str(RULES.relative_to(ROOT)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool check rules failed:\n{output}"
    assert "SUCCESS" in output, output


def test_promtool_test_rules() -> None:
    result = _run("test", "rules", str(RULE_TESTS.relative_to(ROOT)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool test rules failed:\n{output}"
    assert "SUCCESS" in output, output


def test_rules_read_only_the_processor_metrics() -> None:
    used: set[str] = set()
    for rule in _rules():
        # raw metric names only: not the recording rules' level:metric:operation names
        used |= set(re.findall(r"(?<![\w:])agent_eval_\w+", rule["expr"]))
    assert used, "no agent_eval_* metric read"
    assert used <= CONTRACT_METRICS, f"metrics outside the processor's contract: {sorted(used - CONTRACT_METRICS)}"


def test_every_alert_has_severity_annotations_and_low_cardinality_labels() -> None:
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == EXPECTED_ALERTS
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        if name.startswith("Agent") and not name.startswith("AgentEval"):
            assert "$labels.agent" in annotations["summary"], name
    # every aggregation, in alerts and recording rules, keeps only allowed labels: nothing else reaches an alert
    for rule in _rules():
        for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
            labels = {label.strip() for label in clause.split(",") if label.strip()}
            assert labels <= ALLOWED_ALERT_LABELS, f"{rule}: {sorted(labels - ALLOWED_ALERT_LABELS)}"
    mode_spike = next(rule for rule in alerts if rule["alert"] == "AgentFailureModeSpike")
    assert "$labels.mode" in mode_spike["annotations"]["summary"]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert doc["rule_files"] == [RULES.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fires == EXPECTED_ALERTS, f"never seen firing: {sorted(EXPECTED_ALERTS - fires)}"
    assert quiet == EXPECTED_ALERTS, f"never seen quiet: {sorted(EXPECTED_ALERTS - quiet)}"


def test_every_alert_links_its_runbook_and_its_dashboard_panel() -> None:
    """`runbook_url`: the alert's page in docs/runbooks/, which exists and is about it. `dashboard`: a path on
    Grafana to a panel of dashboards/agent-eval.json, filtered to the alert's agent or job (which panel, and that
    it shows what the alert reads: tests/test_dashboards.py)."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = {panel["id"]: panel for panel in board["panels"] if panel["type"] != "row"}
    alerts = [rule for rule in _rules() if "alert" in rule]
    for rule in alerts:
        name, annotations = rule["alert"], rule["annotations"]
        assert annotations.get("runbook_url") == f"{RUNBOOKS}{name}.md", name
        runbook = ROOT / "docs" / "runbooks" / f"{name}.md"
        assert runbook.is_file(), f"{name}: no runbook at {runbook.relative_to(ROOT)}"
        text = runbook.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}"), f"{runbook.name} is not about {name}"
        dashboard = urllib.parse.urlsplit(annotations.get("dashboard", ""))
        assert dashboard.path == f"/d/{board['uid']}/otel-agent-eval", (name, annotations.get("dashboard"))
        query = urllib.parse.parse_qs(dashboard.query)
        [panel_id] = query["viewPanel"]
        assert int(panel_id) in panels, (name, panel_id)
        assert panels[int(panel_id)]["title"] in text, f"{runbook.name} does not name the panel it links to"
        # the link sets one variable: a label of the alert itself, URL-quoted (an agent's name may hold a space)
        [(variable, value)] = [(key, value) for key, value in query.items() if key.startswith("var-")]
        label = variable.removeprefix("var-")
        assert value == [f"{{{{ $labels.{label} | urlquery }}}}"], name
        described = annotations["summary"] + annotations["description"]
        assert f"$labels.{label}" in described, f"{name}: {label} is not a label of the alert"
