"""The command line explains itself: why a score is what it is (`traces`), which step failed how (`show`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import TAU_BENCH
from llm_server import LLMServer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_auto_openai import TOOLS, agent, server, spans
from test_processor import config, send_runs, wait_for

from otel_agent_eval.cli import main
from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.span_record import SpanRecord
from otel_agent_eval.ingest.spans import runs_from_records
from otel_agent_eval.instrument import agent_run
from otel_agent_eval.instrument.auto.openai import OpenAIInstrumentor
from otel_agent_eval.processor import Processor
from otel_agent_eval.processor.store import Store

__all__ = ["server", "spans"]  # fixtures


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


def store_spans(data: Path, spans: Sequence[ReadableSpan]) -> tuple[str, list[dict[str, Any]]]:
    """The spans in a store, with their evaluation, as `serve` keeps them; returns the trace id and results."""
    records = [SpanRecord.from_readable(s) for s in spans]
    results = [Engine().evaluate(run).to_dict() for run in runs_from_records(records)]
    store = Store(data / "agent-eval.sqlite")
    store.save_trace(records[0].trace_id, None, results, encode_spans(spans).SerializeToString())
    store.close()
    return records[0].trace_id, results


def step_lines(out: str) -> dict[str, str]:
    """Each numbered line of a tree, by its number."""
    numbered = (re.search(r"(?:[├└]── |^trace \w+  )\[([\d,]+)\] (.*)", line) for line in out.splitlines())
    return {m.group(1): m.group(2) for m in numbered if m}


def test_show_numbers_the_steps_and_marks_the_failing_span(tmp_path: Path) -> None:
    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with agent_run("shop", tracer_provider=provider, tool_definitions=TOOLS) as run:
        run.user_message("Cancel #W1")
        with run.chat(model="m") as call:
            call.set_response(tool_calls=[{"id": "c1", "name": "cancel_order", "arguments": {"order_id": "#W1"}}])
        with run.tool("cancel_order", call_id="c1", arguments={"order_id": "#W1"}) as t:
            t.set_result("ok")
        with run.chat(model="m") as call:
            call.set_response(content="Done.")
    trace_id, results = store_spans(tmp_path, exporter.get_finished_spans())
    [wrong] = [f for f in results[0]["failures"] if f["mode"] == "wrong_arguments"]
    code, out, err = invoke("show", trace_id, "--data-dir", str(tmp_path))
    assert code == 0, err
    lines = step_lines(out)
    assert sorted(lines) == ["0", "1", "2", "3"]  # the spans' own agent_eval.step.index
    assert "[terminal wrong_arguments]" in lines[str(wrong["step"])]
    assert f"  [{wrong['step']}] terminal tool.wrong_arguments:" in out


def test_show_numbers_an_auto_instrumented_trace_as_the_evaluator_did(
    spans: InMemorySpanExporter, server: LLMServer, tmp_path: Path
) -> None:
    agent(server, "because")  # a reason the tool's schema does not allow
    finished = spans.get_finished_spans()
    # The tool span carries an index of its own (the @tool decorator's), the model spans none: the evaluator
    # rebuilt the conversation and numbered it; `show` numbers the spans as it did.
    assert [s.name for s in finished if "agent_eval.step.index" not in (s.attributes or {})] == ["chat gpt-test"] * 2
    trace_id, results = store_spans(tmp_path, finished)
    failures = [f for r in results for f in r["failures"] if f["mode"] == "wrong_arguments"]
    assert failures
    code, out, err = invoke("show", trace_id, "--data-dir", str(tmp_path))
    assert code == 0, err
    lines = step_lines(out)
    assert len(lines) == 3, out
    for f in failures:
        assert "[terminal wrong_arguments]" in lines[str(f["step"])], out
        assert f"  [{f['step']}] terminal tool.wrong_arguments:" in out


def test_an_auto_instrumented_run_is_named_by_its_service_or_gen_ai_agent_name(server: LLMServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-assistant"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    try:
        agent(server, "no longer needed")
    finally:
        OpenAIInstrumentor().uninstrument()
    records = [SpanRecord.from_readable(s) for s in exporter.get_finished_spans()]
    [run] = runs_from_records(records)
    assert run.agent_name == "shop-assistant"
    # gen_ai.agent.name on a span of the run comes first.
    named = [
        replace(r, attributes={**r.attributes, "gen_ai.agent.name": "triage"}) if i == 1 else r
        for i, r in enumerate(records)
    ]
    assert [r.agent_name for r in runs_from_records(named)] == ["triage"]
    # The SDK's default service name names nothing.
    anonymous = [replace(r, resource={"service.name": "unknown_service"}) for r in records]
    assert [r.agent_name for r in runs_from_records(anonymous)] == [None]


def test_serve_logs_one_line_per_evaluated_trace(
    tmp_path: Path, running: Callable[..., Processor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otel_agent_eval.processor.pipeline")
    processor = running(config(tmp_path))
    send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
    wait_for(lambda: len(processor.store.recent_traces()) == 2)
    stored = sorted(t.trace_id for t in processor.store.recent_traces())
    processor.stop()
    lines = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("trace ") and "evaluated" in r.getMessage()
    ]
    assert len(lines) == 2
    for line, trace_id in zip(sorted(lines), stored, strict=True):
        assert (
            line == f"trace {trace_id} evaluated: agent shop, outcome terminal, failures terminal:tool.wrong_arguments"
        )
    assert not any("Cancel order" in r.getMessage() or "Done." in r.getMessage() for r in caplog.records)


def test_config_help_lists_the_real_keys() -> None:
    from otel_agent_eval.processor.command import config_keys, serve

    code, out, err = invoke("serve", "--help")
    assert code == 0, err
    keys = config_keys()
    assert {
        "assembly.quiet_period",
        "exporter.downstream_headers",
        "evaluation.policy_packs",
        "telemetry.agent_labels",
        "log_level",
        "evaluation.evaluate",
    } <= set(keys)
    assert {p.name for p in serve.params} - {"config", "print_config"} == {k.rpartition(".")[2] for k in keys}
    flat = " ".join(out.split())
    assert "its keys: " + ", ".join(keys) + "." in flat


def test_config_file_takes_every_listed_key(tmp_path: Path) -> None:
    from otel_agent_eval.processor.command import config_keys

    path = tmp_path / "c.yaml"
    path.write_text("no_such_key: 1\n")
    code, _, err = invoke("serve", "--config", str(path))
    assert code == 2 and "known: " + ", ".join(config_keys()) in err


def test_import_and_evaluate_both_take_output_and_out(tmp_path: Path) -> None:
    for flag in ("--output", "-o", "--out"):
        traces = tmp_path / f"t{flag}.json"
        code, _, err = invoke("import", str(TAU_BENCH), flag, str(traces))
        assert code == 0 and traces.exists(), err
        results = tmp_path / f"r{flag}.jsonl"
        code, _, err = invoke("evaluate", str(traces), flag, str(results))
        assert code == 0 and results.exists(), err
    for command in ("import", "evaluate"):
        code, out, _ = invoke(command, "--help")
        assert "--output" in out and "-o" in out and "--out " not in out  # the alias is hidden
        code, _, err = invoke(command, str(TAU_BENCH))
        assert code == 2 and "--output" in err
        code, _, err = invoke(command, str(TAU_BENCH), "--output", "a", "--out", "b")
        assert code == 2 and "two different files" in err


def test_what_came_from_spans_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """An agent's name and a critique are the senders' text: printed, they cannot move the cursor, clear the
    screen or set the window title."""
    hostile = "evil\x1b]0;pwned\x07\r\x1b[2JOVER"
    store = Store(tmp_path / "agent-eval.sqlite")
    failure = {
        "mode": "wrong_arguments",
        "category": "tool",
        "outcome": "terminal",
        "step": 1,
        "span_id": None,
        "critique": hostile,
        "evaluator": "schema",
        "confidence": 0.9,
    }
    result = {
        "source": {"file": None, "index": None, "id": None},
        "trace_id": "ab" * 16,
        "outcome": "terminal",
        "failure_score": 0.9,
        "failures": [failure],
        "suspicions": [],
    }
    store.save_trace("ab" * 16, hostile, [result], ExportTraceServiceRequest().SerializeToString())
    store.close()
    for args in (["traces"], ["show", "ab" * 16], ["report", "--store", str(tmp_path)]):
        code, out, err = invoke(*args, "--data-dir", str(tmp_path)) if args[0] != "report" else invoke(*args)
        assert code == 0, err
        assert "\x07" not in out and "\r" not in out and "\x1b]" not in out and "\x1b[2J" not in out, (args, out)


def test_report_on_an_empty_store_says_why(tmp_path: Path) -> None:
    Store(tmp_path / "agent-eval.sqlite").close()
    code, _, err = invoke("report", "--store", str(tmp_path))
    assert code == 0 and "no evaluated traces yet" in err


@pytest.mark.parametrize("endpoint", ["garbage", "host:", "host:99999", ":4317", "http://:4317"])
def test_replay_to_an_address_that_is_none_is_a_clear_error(endpoint: str) -> None:
    code, _, err = invoke("replay", str(TAU_BENCH), "--endpoint", endpoint)
    assert code == 2 and "expected HOST:PORT" in err, (code, err)
