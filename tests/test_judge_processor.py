"""serve --judge: the trace goes on with the detectors' labels at once, the judge's findings follow as an
`evaluation` span of the same trace, the store's results are revised, and every call is counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from llm_server import LLMServer, openai_chat
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otlp_receiver import OtlpReceiver
from test_processor import config, metric_total, received_records, wait_for

from otel_agent_eval.instrument import agent_run
from otel_agent_eval.processor import Processor

TOOLS = [
    {
        "name": "exchange_item",
        "description": "Exchange an item of a delivered order for another variant of the same product.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "new_item": {"type": "string"}},
            "required": ["order_id", "new_item"],
        },
    }
]


GREEN = {"order_id": "#W7", "new_item": "green"}


def send_run(endpoint: str) -> None:
    """One run the detectors pass and a judge fails: the agent exchanges for the variant the user did not ask."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    with agent_run("shop", tool_definitions=TOOLS, tracer_provider=provider) as run:
        run.user_message("Please exchange the blue kettle in order #W7 for the red one.")
        with run.chat(model="m") as call:
            call.set_response(
                tool_calls=[
                    {"id": "c1", "name": "exchange_item", "arguments": {"order_id": "#W7", "new_item": "green"}}
                ]
            )
        with run.tool("exchange_item", call_id="c1", arguments={"order_id": "#W7", "new_item": "green"}) as tool:
            tool.set_result('{"status": "exchange requested"}')
        with run.chat(model="m") as call:
            call.set_response(content="Done: your kettle will be exchanged.")
    provider.shutdown()


def answer(*findings: dict[str, object]) -> object:
    return openai_chat(json.dumps({"findings": list(findings)}), model="selene")


WRONG_VARIANT = {
    "step": 1,
    "mode": "wrong_action",
    "outcome": "terminal",
    "critique": "The user asked for the red kettle: exchange for red.",
    "evidence": "step 0 asks for red; step 1 sends green",
    "confidence": 0.9,
}


def judged_config(tmp_path: Path, server: LLMServer, downstream: str | None) -> object:
    extra = {"downstream": downstream} if downstream else {}
    return config(
        tmp_path,
        judge="all",
        judge_base_url=server.openai_base_url,
        judge_model="selene",
        early_evaluation_interval=0.0,
        **extra,
    )


def test_the_judges_findings_follow_as_an_evaluation_span(tmp_path: Path, running: Callable[..., Processor]) -> None:
    with LLMServer() as server, OtlpReceiver() as downstream:
        # workflow, user_interaction, tool: one call each
        server.script(answer(WRONG_VARIANT), answer(), answer())
        processor = running(judged_config(tmp_path, server, f"grpc://{downstream.endpoint}"))
        send_run(processor.grpc.endpoint)  # type: ignore[union-attr]
        wait_for(lambda: any(r.name.startswith("evaluation ") for r in received_records(downstream)))
        records = received_records(downstream)
        wait_for(
            lambda: (
                processor.store.recent_traces()[0].outcome == "terminal" if processor.store.recent_traces() else False
            )
        )
        [stored] = processor.store.recent_traces()
        calls = {f: metric_total(processor, "agent_eval_judge_calls_total", family=f) for f in ("workflow", "tool")}
        tokens = metric_total(processor, "agent_eval_judge_tokens_total", kind="prompt")
        runs = metric_total(processor, "agent_eval_judge_runs_total", reason="all")
        failures = metric_total(processor, "agent_eval_failures_total", mode="wrong_action", outcome="terminal")
    root = next(r for r in records if r.parent_span_id is None)
    assert root.attributes["agent_eval.trace.outcome"] == "success"  # the detectors' labels, handed on at once
    [follow_up] = [r for r in records if r.name.startswith("evaluation ")]
    assert follow_up.name == "evaluation judge:selene" and follow_up.trace_id == root.trace_id
    assert follow_up.parent_span_id == root.span_id
    assert follow_up.attributes["gen_ai.operation.name"] == "evaluation"
    assert follow_up.attributes["agent_eval.trace.outcome"] == "terminal"  # the revised verdict
    assert follow_up.attributes["agent_eval.failure.mode"] == "wrong_action"
    assert follow_up.attributes["agent_eval.failure.evidence_kind"] == "judge"
    assert follow_up.attributes["agent_eval.agent.name"] == "shop"
    [event] = [e for e in follow_up.events if e.name == "gen_ai.evaluation.result"]
    assert event.attributes["gen_ai.evaluation.name"] == "wrong_action"
    assert event.attributes["agent_eval.step.index"] == 1
    step_1 = next(r for r in records if r.attributes.get("agent_eval.step.index") == 1)
    assert follow_up.resource.get("service.name") == "otel-agent-eval"
    # the link names the judged span (records keep no links: read them from the request)
    with downstream.lock:
        spans = [
            s for req in downstream.requests for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans
        ]
    [proto] = [s for s in spans if s.name.startswith("evaluation ")]
    assert [link.span_id.hex() for link in proto.links] == [step_1.span_id]
    assert stored.outcome == "terminal" and "terminal:workflow.wrong_action" in stored.modes
    judge_finding = next(f for r in stored.results for f in r["failures"] if f["evaluator"] == "judge:selene")
    assert judge_finding["step"] == 1 and judge_finding["span_id"] == step_1.span_id
    assert calls == {"workflow": 1, "tool": 1} and tokens > 0 and runs == 1 and failures == 1
    assert len(server.requests) == 3


def test_a_judge_that_cannot_answer_costs_nothing_but_its_findings(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    with LLMServer() as server, OtlpReceiver() as downstream:
        processor = running(judged_config(tmp_path, server, f"grpc://{downstream.endpoint}"))
        send_run(processor.grpc.endpoint)  # type: ignore[union-attr]
        wait_for(lambda: metric_total(processor, "agent_eval_judge_errors_total", reason="server_error") == 3)
        wait_for(lambda: downstream.span_count() == 6)
        records = received_records(downstream)
    root = next(r for r in records if r.parent_span_id is None)
    assert root.attributes["agent_eval.trace.outcome"] == "success"  # the detectors' verdict stands
    # The follow-up says the judge could not answer (one evaluator_error a family), and changes no verdict.
    [follow_up] = [r for r in records if r.name.startswith("evaluation ")]
    assert follow_up.attributes["agent_eval.trace.outcome"] == "success"
    assert "agent_eval.failure.mode" not in follow_up.attributes
    events = [e for e in follow_up.events if e.name == "gen_ai.evaluation.result"]
    assert [e.attributes["gen_ai.evaluation.name"] for e in events] == ["evaluator_error"] * 3


def test_without_a_downstream_the_follow_up_is_kept_with_the_trace(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    with LLMServer() as server:
        server.script(answer(WRONG_VARIANT), answer(), answer())
        processor = running(judged_config(tmp_path, server, None))
        send_run(processor.grpc.endpoint)  # type: ignore[union-attr]

        wait_for(lambda: [t.outcome for t in processor.store.recent_traces()] == ["terminal"])
        [stored] = processor.store.recent_traces()
        row = processor.store.get_trace(stored.trace_id)
    assert row is not None
    request = ExportTraceServiceRequest.FromString(row.spans)
    names = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert "evaluation judge:selene" in names and len(names) == 6


def test_the_judge_is_refused_with_worker_processes(tmp_path: Path) -> None:
    import pytest

    from otel_agent_eval.processor.security import StartupError
    from otel_agent_eval.processor.server import check_config

    settings = {"judge": "all", "judge_base_url": "http://127.0.0.1:9/v1", "judge_model": "m", "processes": 1}
    with pytest.raises(StartupError, match="not with --processes"):
        check_config(config(tmp_path, **settings))
