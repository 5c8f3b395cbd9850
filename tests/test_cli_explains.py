"""The command line explains itself: why a score is what it is (`traces`), which step failed how (`show`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_agent_eval.cli import main
from otel_agent_eval.processor.store import Store


def finding(mode: str, step: int, outcome: str = "terminal", confidence: float = 0.9, **extra: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "category": "tool",
        "step": step,
        "span_id": None,
        "outcome": outcome,
        "critique": f"{mode} at {step}",
        "evidence": "",
        "evaluator": "schema",
        "confidence": confidence,
        "evidence_kind": "structural",
        **extra,
    }


def result(outcome: str, score: float, failures: list[Any], suspicions: list[Any]) -> dict[str, Any]:
    return {"outcome": outcome, "failure_score": score, "failures": failures, "suspicions": suspicions}


def invoke(*args: str) -> tuple[int, str, str]:
    got = CliRunner().invoke(main, list(args))
    return got.exit_code, got.stdout, got.stderr


def test_traces_names_the_top_failure_or_the_top_suspicion(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent-eval.sqlite")
    empty = ExportTraceServiceRequest().SerializeToString()
    failing = [finding("loop", 4, "recovered"), finding("wrong_arguments", 3), finding("other", 2, confidence=0.5)]
    store.save_trace("a" * 32, "shop", [result("terminal", 0.9, failing, [])], empty)
    suspect = [finding("unsupported_claim", 5, confidence=0.3, evaluator="judge"), finding("x", 1, confidence=0.6)]
    store.save_trace("b" * 32, "shop", [result("success", 0.63, [], suspect)], empty)
    store.save_trace("c" * 32, "shop", [result("success", 0.0, [], [])], empty)
    store.close()
    code, out, err = invoke("traces", "--data-dir", str(tmp_path))
    assert code == 0, err
    lines = {line[:32]: line for line in out.splitlines()[1:]}
    assert "why" in out.splitlines()[0]
    assert "terminal tool.wrong_arguments @3 (schema)" in lines["a" * 32]
    assert "suspicion tool.x @1 (schema)" in lines["b" * 32] and "0.63" in lines["b" * 32]
    assert lines["c" * 32].split()[4:7] == ["success", "0.00", "-"]
