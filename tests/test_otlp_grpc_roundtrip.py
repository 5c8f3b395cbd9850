"""Steps -> spans -> the real OTLP/gRPC exporter -> a real gRPC receiver -> back to the same steps."""

from __future__ import annotations

import contextlib
import subprocess
import sys

from conftest import TAU2, TAU_BENCH
from helpers import run_facts
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otlp_receiver import OtlpReceiver

from otel_agent_eval.ingest.recorded import load_runs
from otel_agent_eval.ingest.span_record import records_from_request
from otel_agent_eval.ingest.spans import runs_from_records
from otel_agent_eval.instrument import agent_run, tool
from otel_agent_eval.model import AgentRun, AssistantMessage, ToolExecution, UserMessage


def _runs(requests: list[ExportTraceServiceRequest]) -> list[AgentRun]:
    return runs_from_records([r for req in requests for r in records_from_request(req)])


@tool
def get_order(order_id: str) -> dict[str, str]:
    if order_id != "#W1":
        raise KeyError(f"no order {order_id}")
    return {"order_id": order_id, "status": "delivered"}


def test_live_instrumentation_through_grpc_exporter() -> None:
    with OtlpReceiver() as receiver:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
        with agent_run(
            "support", conversation_id="c-7", system_instructions="Be kind.", tracer_provider=provider
        ) as run:
            run.user_message("Where is #W1? And #W2?")
            with run.chat(model="gpt-4o", provider="openai") as call:
                call.set_response(
                    tool_calls=[
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_order", "arguments": '{"order_id": "#W1"}'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "get_order", "arguments": '{"order_id": "#W2"}'},
                        },
                    ],
                    input_tokens=120,
                    output_tokens=30,
                )
            run.execute(call.tool_calls[0], get_order)
            with contextlib.suppress(KeyError):  # the tool's error propagates to the agent, as it should
                run.execute(call.tool_calls[1], get_order)
            with run.chat(model="gpt-4o", provider="openai") as call:
                call.set_response(content="#W1 was delivered; I cannot find #W2.")
            run.set_outcome(success=True, reward=1.0)
        provider.shutdown()  # flushes the batch processor through the exporter
        [back] = _runs(receiver.requests)

    assert back.agent_name == "support" and back.conversation_id == "c-7"
    assert back.system_instructions == "Be kind."
    assert back.outcome is not None and back.outcome.success and back.outcome.reward == 1.0
    kinds = [(type(s).__name__, s.index) for s in back.steps]
    assert kinds == [
        ("UserMessage", 0),
        ("AssistantMessage", 1),
        ("ToolExecution", 2),
        ("ToolExecution", 3),
        ("AssistantMessage", 4),
    ]
    user, ask, ok, failed, answer = back.steps
    assert isinstance(user, UserMessage) and user.content == "Where is #W1? And #W2?"
    assert isinstance(ask, AssistantMessage) and [c.arguments for c in ask.tool_calls] == [
        {"order_id": "#W1"},
        {"order_id": "#W2"},
    ]
    assert ask.model == "gpt-4o" and ask.input_tokens == 120 and ask.output_tokens == 30
    assert isinstance(ok, ToolExecution) and ok.call_id == "c1" and ok.error is None
    assert ok.result == '{"order_id": "#W1", "status": "delivered"}'
    assert isinstance(failed, ToolExecution) and failed.call_id == "c2" and failed.error == "'no order #W2'"
    assert isinstance(answer, AssistantMessage) and answer.content == "#W1 was delivered; I cannot find #W2."
    assert all(s.span_id for s in back.steps)


def test_replay_command_sends_every_run(tmp_path: object) -> None:
    expected = [r for f in (TAU_BENCH, TAU2) for r in load_runs(f)]
    with OtlpReceiver() as receiver:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "otel_agent_eval.cli",
                "replay",
                str(TAU_BENCH),
                str(TAU2),
                "--endpoint",
                receiver.endpoint,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "sent 140 runs" in done.stderr
        back = _runs(receiver.requests)
        assert receiver.span_count() == sum(len(r.steps) + 1 for r in expected if isinstance(r, AgentRun))
    assert len(back) == len(expected) == 140
    by_source = {(r.source.file, r.source.index): r for r in back if r.source}
    for run in expected:
        assert isinstance(run, AgentRun) and run.source is not None
        assert run_facts(by_source[(run.source.file, run.source.index)]) == run_facts(run)


def test_replay_reads_every_file_before_sending(tmp_path: object) -> None:
    with OtlpReceiver() as receiver:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "otel_agent_eval.cli",
                "replay",
                str(TAU2),
                "/nonexistent/runs.json",
                "--endpoint",
                receiver.endpoint,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and "/nonexistent/runs.json" in done.stderr
        assert receiver.span_count() == 0


def test_replay_stops_at_an_unreachable_endpoint() -> None:
    with OtlpReceiver() as receiver:
        endpoint = receiver.endpoint
    # The receiver is stopped: nothing listens on its port any more.
    done = subprocess.run(
        [sys.executable, "-m", "otel_agent_eval.cli", "replay", str(TAU2), "--endpoint", endpoint, "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "did not accept" in done.stderr and "0 of 40 runs were sent" in done.stderr
