"""The processor end to end on loopback: the real OTLP exporter in, labelled spans out, nothing lost."""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otlp_receiver import OtlpReceiver

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.span_record import SpanRecord, records_from_request
from otel_agent_eval.instrument import agent_run
from otel_agent_eval.model import AgentRun
from otel_agent_eval.processor import Processor, ServeConfig
from otel_agent_eval.processor.store import Store

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "reason": {"enum": ["no longer needed"]}},
                "required": ["order_id", "reason"],
            },
        },
    }
]


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never the same one twice in a test session (the kernel reuses freed ports)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for something the processor does in the background (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def config(tmp_path: Path, **overrides: Any) -> ServeConfig:
    values: dict[str, Any] = {
        "grpc_endpoint": "127.0.0.1:0",
        "http_endpoint": "127.0.0.1:0",  # bound ports are read back from the processor: no race for free ports
        "metrics_endpoint": "127.0.0.1:0",
        "data_dir": tmp_path / "data",
        "quiet_period": 0.2,
        "drain_seconds": 5.0,
    }
    values.update(overrides)
    return ServeConfig.of(**values)


def metric_total(processor: Processor, name: str, **labels: str) -> float:
    """The sum of a processor metric's samples, over the series with these labels."""
    return sum(
        sample.value
        for metric in processor.registry.collect()
        for sample in metric.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def send_runs(endpoint: str, runs: int = 3) -> int:
    """Agent runs through the real SDK and OTLP/gRPC exporter; each has a planted failure. Returns spans sent."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    spans = 0
    for i in range(runs):
        with agent_run("shop", conversation_id=f"c{i}", tool_definitions=TOOLS, tracer_provider=provider) as run:
            run.user_message(f"Cancel order #{i}, I no longer need it.")
            with run.chat(model="m") as call:  # "because" is not one of the reasons the schema allows
                call.set_response(
                    tool_calls=[
                        {"id": "c1", "name": "cancel_order", "arguments": {"order_id": f"#{i}", "reason": "because"}}
                    ]
                )
            with run.tool("cancel_order", call_id="c1", arguments={"order_id": f"#{i}", "reason": "because"}) as t:
                t.set_result("ok")
            with run.chat(model="m") as call:
                call.set_response(content="Done.")
        spans += 5
    provider.shutdown()
    return spans


def received_records(receiver: OtlpReceiver) -> list[SpanRecord]:
    with receiver.lock:
        return [r for request in receiver.requests for r in records_from_request(request)]


def test_labels_reach_the_downstream(tmp_path: Path, running: Callable[..., Processor]) -> None:
    with OtlpReceiver() as downstream:
        processor = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}"))
        sent = send_runs(processor.grpc.endpoint)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == sent)
        records = received_records(downstream)
    assert len({r.span_id for r in records}) == sent  # every span, each once
    roots = [r for r in records if r.parent_span_id is None]
    assert len(roots) == 3
    for root in roots:
        assert root.attributes["agent_eval.trace.outcome"] == "terminal"
        assert root.attributes["agent_eval.trace.terminal_failures"] >= 1
        assert 0 < root.attributes["agent_eval.trace.failure_score"] <= 1
        assert root.attributes["agent_eval.agent.name"] == "shop"  # beside the summary: one span's tags find it
        assert root.attributes["agent_eval.agent.label"] == "shop"  # as the metrics (and the dashboard) name it
    labelled = [r for r in records if r.attributes.get("agent_eval.failure.mode") == "wrong_arguments"]
    assert len(labelled) == 3 and all(r.name == "chat m" for r in labelled)
    assert all(r.attributes["agent_eval.agent.name"] == "shop" for r in labelled)  # and beside each failure
    event = next(e for e in labelled[0].events if e.name == "gen_ai.evaluation.result")
    assert event.attributes["gen_ai.evaluation.name"] == "wrong_arguments"
    assert event.attributes["gen_ai.evaluation.score.label"] == "fail"
    assert "reason" in labelled[0].attributes["agent_eval.failure.critique"]
    # How far to trust the label, on the span and on its event: a schema violation is structural evidence.
    assert labelled[0].attributes["agent_eval.failure.evidence_kind"] == "structural"
    assert event.attributes["agent_eval.failure.evidence_kind"] == "structural"
    assert event.attributes["agent_eval.failure.evaluator"] == "schema"


def test_embedded_store_and_commands(tmp_path: Path, running: Callable[..., Processor]) -> None:
    from click.testing import CliRunner

    from otel_agent_eval.cli import main

    processor = running(config(tmp_path))
    send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
    wait_for(lambda: len(processor.store.recent_traces()) == 2)
    processor.stop()
    data = str(tmp_path / "data")
    listed = CliRunner().invoke(main, ["traces", "--data-dir", data])
    rows = listed.stdout.splitlines()[1:]
    assert listed.exit_code == 0 and len(rows) == 2 and all(row.split()[4] == "terminal" for row in rows)
    assert "terminal:tool.wrong_arguments" in listed.stdout
    trace_id = listed.stdout.splitlines()[1].split()[0]
    shown = CliRunner().invoke(main, ["show", trace_id, "--data-dir", data])
    assert shown.exit_code == 0, shown.stderr
    assert "[terminal wrong_arguments]" in shown.stdout and "outcome terminal" in shown.stdout
    missing = CliRunner().invoke(main, ["show", "0" * 32, "--data-dir", data])
    assert missing.exit_code == 2 and "no trace" in missing.stderr


def test_metrics_and_health(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path))
    send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
    wait_for(lambda: len(processor.store.recent_traces()) == 2)
    base = f"http://{processor.admin.endpoint}"  # type: ignore[union-attr]
    assert urllib.request.urlopen(base + "/healthz").read() == b"ok\n"
    assert urllib.request.urlopen(base + "/readyz").status == 200
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    assert 'agent_eval_traces_total{agent="shop"' in text and 'outcome="terminal"' in text
    assert 'agent_eval_failures_total{agent="shop",category="tool",mode="wrong_arguments"' in text
    assert "agent_eval_spans_received_total" in text and "agent_eval_evaluation_duration_seconds_bucket" in text
    assert "agent_eval_queue_depth" in text


def _post(url: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _request_bytes() -> bytes:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(
            trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="GET /", start_time_unix_nano=1, end_time_unix_nano=2
        )
    )
    span.attributes.add(key="http.method").value.string_value = "GET"
    return request.SerializeToString()


def test_http_receiver_and_bad_input(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path, max_payload_bytes=4096))
    url = f"http://{processor.http.endpoint}/v1/traces"  # type: ignore[union-attr]
    assert _post(url, _request_bytes(), "application/x-protobuf")[0] == 200
    gz = gzip.compress(_request_bytes())
    assert _post(url, gz, "application/x-protobuf", {"Content-Encoding": "gzip"})[0] == 200
    as_json = json.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "03" * 16, "spanId": "04" * 8, "name": "x"}]}]}]}
    ).encode()
    assert _post(url, as_json, "application/json")[0] == 200
    code, body = _post(url, b"\xff\xfe not protobuf", "application/x-protobuf")
    assert code == 400 and b"not an OTLP ExportTraceServiceRequest" in body
    code, body = _post(url, b'{"resourceSpans": 7}', "application/json")
    assert code == 400
    code, body = _post(url, _request_bytes(), "text/plain")
    assert code == 415 and b"Content-Type" in body
    code, body = _post(url, b"x" * 5000, "application/x-protobuf")
    assert code == 413 and b"over the limit" in body
    # Non-agent spans are forwarded (stored) untouched: two traces (the first two requests are one), no runs.
    wait_for(
        lambda: (
            sum(
                len(list(records_from_request(ExportTraceServiceRequest.FromString(t.spans))))
                for t in processor.store.recent_traces()
            )
            == 3
        )
    )
    assert len(processor.store.recent_traces()) == 2
    assert all(t.outcome is None for t in processor.store.recent_traces())


def test_grpc_bad_input_and_token(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path, bearer_token="s3cret", max_payload_bytes=4096))
    channel = grpc.insecure_channel(processor.grpc.endpoint)  # type: ignore[union-attr]
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    auth = (("authorization", "Bearer s3cret"),)
    assert export(_request_bytes(), metadata=auth, timeout=10) == b""
    with pytest.raises(grpc.RpcError) as bad:
        export(b"\xff\xfe not protobuf", metadata=auth, timeout=10)
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not an OTLP ExportTraceServiceRequest" in (bad.value.details() or "")
    with pytest.raises(grpc.RpcError) as big:
        export(b"\x00" * 5000, metadata=auth, timeout=10)
    assert big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as anonymous:
        export(_request_bytes(), timeout=10)
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert export(_request_bytes(), metadata=auth, timeout=10) == b""  # other clients unaffected
    channel.close()


def test_downstream_outage_then_recovery(tmp_path: Path, running: Callable[..., Processor]) -> None:
    port = free_port()  # nothing listens there yet
    processor = running(config(tmp_path, downstream=f"grpc://127.0.0.1:{port}"))
    sent = send_runs(processor.grpc.endpoint, runs=4)  # type: ignore[union-attr]
    wait_for(lambda: processor.store.outbox_size() == 4)  # evaluated, waiting on disk
    downstream = OtlpReceiver()
    downstream.server.add_insecure_port(f"127.0.0.1:{port}")
    with downstream:
        wait_for(lambda: downstream.span_count() == sent, timeout=60)
        records = received_records(downstream)
    assert len(records) == len({r.span_id for r in records}) == sent  # every span, each once
    assert processor.store.outbox_size() == 0


class Slow:
    name = "slow"

    def evaluate(self, run: AgentRun, context: Any) -> list[Any]:
        time.sleep(2.0)
        return []


class Crashing(Engine):
    def evaluate(self, run: AgentRun, *, complete: bool = True) -> Any:
        raise RuntimeError("evaluator bug")


@pytest.mark.parametrize("engine", [Engine([Slow()]), Crashing([])], ids=["slow", "crashing"])
def test_unevaluable_traces_are_forwarded_unlabelled(
    tmp_path: Path, running: Callable[..., Processor], engine: Engine
) -> None:
    with OtlpReceiver() as downstream:
        processor = running(
            config(tmp_path, downstream=f"grpc://{downstream.endpoint}", evaluation_timeout=0.5), engine
        )
        sent = send_runs(processor.grpc.endpoint, runs=1)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == sent)
        records = received_records(downstream)
    assert all("agent_eval.evaluation.error" in r.attributes for r in records)
    assert not any("agent_eval.failure.mode" in r.attributes for r in records)


def test_store_adds_late_parts_of_a_trace(tmp_path: Path) -> None:
    from otel_agent_eval.processor.store import Store

    store = Store(tmp_path / "s.sqlite")
    first, second = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    first.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8)
    second.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    store.save_trace("01" * 16, "a", [{"outcome": "success", "failures": []}], first.SerializeToString())
    store.save_trace("01" * 16, None, [{"outcome": "terminal", "failures": []}], second.SerializeToString())
    [kept] = store.recent_traces()
    assert kept.outcome == "terminal" and kept.agent == "a" and len(kept.results) == 2
    assert len(list(records_from_request(ExportTraceServiceRequest.FromString(kept.spans)))) == 2
    store.close()


def _serve(data_dir: Path, grpc_port: int, quiet: float, downstream: str | None = None) -> Any:
    import subprocess
    import sys

    args = [
        sys.executable,
        "-m",
        "otel_agent_eval.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--http-endpoint",
        "",
        "--metrics-endpoint",
        "",
        "--quiet-period",
        str(quiet),
        "--max-wait",
        str(quiet * 2),
    ]
    if downstream:
        args += ["--downstream", downstream]
    return subprocess.Popen(args, stderr=subprocess.PIPE, text=True)


def _wait_listening(port: int) -> None:
    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(up)


def test_kill_9_mid_stream_loses_nothing(tmp_path: Path) -> None:
    import signal

    from otel_agent_eval.processor.store import Store

    port, data = free_port(), tmp_path / "data"
    first = _serve(data, port, quiet=300.0)  # nothing gets evaluated before the kill
    try:
        _wait_listening(port)
        sent = send_runs(f"127.0.0.1:{port}", runs=3)
        probe = Store(data / "agent-eval.sqlite")
        wait_for(lambda: probe.inbox_size() > 0)
        probe.close()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    with OtlpReceiver() as downstream:
        second = _serve(data, port, quiet=0.2, downstream=f"grpc://{downstream.endpoint}")
        try:
            wait_for(lambda: downstream.span_count() == sent, timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
        records = received_records(downstream)
    assert second.returncode == 0, second.stderr.read() if second.stderr else ""
    assert len({r.span_id for r in records}) == len(records) == sent
    assert sum(r.attributes.get("agent_eval.trace.outcome") == "terminal" for r in records) == 3


def test_kill_9_while_a_delivery_hangs_loses_nothing(tmp_path: Path) -> None:
    """A labelled trace taken in memory to be sent at once is still in the inbox until the downstream takes
    it: killed while the downstream holds the export, the next start evaluates and delivers it again."""
    import signal
    import threading

    entered, release = threading.Event(), threading.Event()

    def hang(request: Any) -> None:
        entered.set()
        release.wait(30)
        return None

    port, data = free_port(), tmp_path / "data"
    with OtlpReceiver(fail=hang) as held:
        first = _serve(data, port, quiet=0.2, downstream=f"grpc://{held.endpoint}")
        try:
            _wait_listening(port)
            sent = send_runs(f"127.0.0.1:{port}", runs=3)
            assert entered.wait(60), "no delivery was attempted"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
            release.set()
    assert first.returncode == -signal.SIGKILL
    with OtlpReceiver() as downstream:
        second = _serve(data, port, quiet=0.2, downstream=f"grpc://{downstream.endpoint}")
        try:
            wait_for(lambda: downstream.span_count() >= sent, timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
        records = received_records(downstream)
    assert second.returncode == 0, second.stderr.read() if second.stderr else ""
    assert len({r.span_id for r in records}) == len(records) == sent  # every span, each once, labelled again
    assert sum(r.attributes.get("agent_eval.trace.outcome") == "terminal" for r in records) == 3


def test_labelled_traces_not_taken_survive_a_stop_and_are_not_evaluated_again(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    port = free_port()  # nothing listens there yet
    processor = running(config(tmp_path, downstream=f"grpc://127.0.0.1:{port}", drain_seconds=1.0))
    sent = send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
    wait_for(lambda: metric_total(processor, "agent_eval_traces_total") == 2)
    processor.stop()
    store = Store(tmp_path / "data" / "agent-eval.sqlite")
    assert (store.outbox_size(), store.inbox_size()) == (2, 0)  # labelled, on disk, out of the inbox
    store.close()
    downstream = OtlpReceiver()
    downstream.server.add_insecure_port(f"127.0.0.1:{port}")
    with downstream:
        again = running(config(tmp_path, downstream=f"grpc://127.0.0.1:{port}"))
        wait_for(lambda: downstream.span_count() == sent, timeout=60)
        records = received_records(downstream)
    assert metric_total(again, "agent_eval_traces_total") == 0  # delivered as labelled before the stop
    assert sum(r.attributes.get("agent_eval.failure.mode") == "wrong_arguments" for r in records) == 2


def test_overload_is_refused_retryably(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path, max_spans_in_flight=2, quiet_period=300.0))
    url = f"http://{processor.http.endpoint}/v1/traces"  # type: ignore[union-attr]
    assert _post(url, _request_bytes(), "application/x-protobuf")[0] == 200  # one span waits
    request = ExportTraceServiceRequest.FromString(_request_bytes())
    request.resource_spans[0].scope_spans[0].spans.add(trace_id=b"\x05" * 16, span_id=b"\x06" * 8, name="y")
    code, body = _post(url, request.SerializeToString(), "application/x-protobuf")
    assert code == 503 and b"retry later" in body
    channel = grpc.insecure_channel(processor.grpc.endpoint)  # type: ignore[union-attr]
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as refused:
        export(request.SerializeToString(), timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    channel.close()
    assert processor.store.inbox_size() == 1  # the refused requests were not kept: the client still has them


def test_failures_of_an_open_trace_are_counted_as_they_happen(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    processor = running(config(tmp_path, early_evaluation_interval=0.1, quiet_period=0.2))

    def early(mode: str) -> float:
        return metric_total(processor, "agent_eval_early_failures_total", mode=mode)

    provider = TracerProvider()  # each span sent as it ends: the steps arrive while the run is still open
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=processor.grpc.endpoint, insecure=True)))  # type: ignore[union-attr]
    with agent_run("desk", tool_definitions=TOOLS, tracer_provider=provider) as run:
        run.user_message("Cancel order #1.")
        # The run's own span (which carries its tool definitions) arrives last; the model call states them too.
        with run.chat(model="m", tool_definitions=TOOLS) as call:
            call.set_response(
                tool_calls=[{"id": "c1", "name": "cancel_order", "arguments": {"order_id": "#1", "reason": "because"}}]
            )
        wait_for(lambda: early("wrong_arguments") == 1)  # counted before the conversation is over
        assert len(processor.store.recent_traces()) == 0
        with run.chat(model="m") as call:
            call.set_response(content="Anything else?")
    wait_for(lambda: len(processor.store.recent_traces()) == 1)
    assert early("wrong_arguments") == 1  # counted once, however many looks it got
    [stored] = processor.store.recent_traces()
    assert stored.outcome == "terminal"
    provider.shutdown()


def test_failures_the_guard_turned_into_recoveries_are_counted(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    from otel_agent_eval.hook import Guard

    processor = running(config(tmp_path))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=processor.grpc.endpoint, insecure=True)))  # type: ignore[union-attr]
    guard = Guard(tools=TOOLS)
    history = [{"role": "user", "content": "Cancel order #1, I no longer need it."}]
    wrong = {"id": "c1", "name": "cancel_order", "arguments": {"order_id": "#1", "reason": "because"}}
    with agent_run("desk", tool_definitions=TOOLS, tracer_provider=provider) as run:
        run.user_message(history[0]["content"])
        with run.chat(model="m") as call:
            call.set_response(tool_calls=[wrong])
            verdict = guard.check(
                history,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "cancel_order", "arguments": json.dumps(wrong["arguments"])},
                        }
                    ],
                },
            )
        assert verdict.action == "revise"
        with run.tool("cancel_order", call_id="c1", arguments=wrong["arguments"]) as t:
            t.set_error(f"Not executed: {verdict.critique}")
        with run.chat(model="m") as call:
            call.set_response(
                tool_calls=[{**wrong, "id": "c2", "arguments": {"order_id": "#1", "reason": "no longer needed"}}]
            )
        run.execute(call.tool_calls[0], lambda order_id, reason: {"status": "cancelled"})
        with run.chat(model="m") as call:
            call.set_response(content="Done: order #1 is cancelled.")
    provider.shutdown()
    wait_for(lambda: len(processor.store.recent_traces()) == 1)
    assert processor.store.recent_traces()[0].outcome == "recovered"
    assert metric_total(processor, "agent_eval_guard_recoveries_total") >= 1


def test_a_followed_loop_waits_the_loop_quiet_period() -> None:
    """A trace whose root is an auto-instrumented loop's first model call (it ends long before the loop) is not
    evaluated after the ordinary quiet period, but after the loop quiet period."""
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

    from otel_agent_eval.processor.assembly import ResourceSpansBatch, TraceAssembler

    clock = [0.0]
    assembler = TraceAssembler(quiet_period=1.0, loop_quiet_period=10.0, max_wait=60.0, clock=lambda: clock[0])
    for trace, followed in ((b"f" * 16, True), (b"p" * 16, False)):
        rs = ResourceSpans()
        root = rs.scope_spans.add().spans.add(trace_id=trace, span_id=b"r" * 8, name="chat m")
        if followed:
            kv = root.attributes.add(key="agent_eval.run.followed")
            kv.value.bool_value = True
        assembler.add(ResourceSpansBatch.of([rs]))
    clock[0] = 2.0
    assert [t.trace_id for t in assembler.ready()] == [b"p" * 16]
    for clock[0] in (9.0, 18.0, 27.0, 36.0, 45.0, 54.0, 63.0):  # a loop that goes on past the maximum wait
        more = ResourceSpans()
        more.scope_spans.add().spans.add(trace_id=b"f" * 16, span_id=b"c" * 8, parent_span_id=b"r" * 8, name="chat")
        assembler.add(ResourceSpansBatch.of([more]))
        assert assembler.ready() == []
    clock[0] = 74.0
    [loop] = assembler.ready()
    assert loop.trace_id == b"f" * 16 and len(loop.spans) == 8 and loop.reason == "complete"


def test_the_first_call_of_a_followed_loop_is_marked() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_agent_eval.ingest.messages import ChatMessage
    from otel_agent_eval.instrument import agent_run
    from otel_agent_eval.instrument.api import get_tracer
    from otel_agent_eval.instrument.conversation import _followed, start_model_call

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = get_tracer(provider)
    token = _followed.set(())
    try:
        question = [ChatMessage(role="user", content="hi")]
        start_model_call(tracer, provider="p", model="m", messages=question).finish(content="hello")
        again = [*question, ChatMessage(role="assistant", content="hello"), ChatMessage(role="user", content="bye")]
        start_model_call(tracer, provider="p", model="m", messages=again).finish(content="bye")
        with agent_run("a", tracer_provider=provider):
            start_model_call(tracer, provider="p", model="m", messages=question).finish(content="x")
    finally:
        _followed.reset(token)
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    marked = [s.attributes.get("agent_eval.run.followed") for s in spans if s.name == "chat m"]
    assert marked == [True, None, None]  # the followed loop's first call only; not its second, nor in a run
    assert len({s.context.trace_id for s in spans if s.name == "chat m"}) == 2


def test_guard_recoveries_in_an_auto_instrumented_loop_are_counted(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    """A bare-SDK loop under the OpenAI instrumentor, checked by the loop helper: the model call's span has ended
    when the guard judges its answer, so the verdict is a span of its own naming it; the processor counts the
    failure the guard turned around."""
    import openai
    from llm_server import LLMServer, openai_chat

    from otel_agent_eval.hook import Guard
    from otel_agent_eval.hook.loops import OpenAILoopGuard
    from otel_agent_eval.instrument.auto.openai import OpenAIInstrumentor

    processor = running(config(tmp_path, loop_quiet_period=0.2))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=processor.grpc.endpoint, insecure=True)))  # type: ignore[union-attr]
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    loop = OpenAILoopGuard(Guard(tools=TOOLS))
    try:
        with LLMServer() as server, openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as c:
            server.script(
                openai_chat(tool_calls=[("c1", "cancel_order", {"order_id": "#1", "reason": "because"})]),
                openai_chat(tool_calls=[("c2", "cancel_order", {"order_id": "#1", "reason": "no longer needed"})]),
                openai_chat("Done: order #1 is cancelled."),
            )
            messages: list[Any] = [{"role": "user", "content": "Cancel order #1, I no longer need it."}]
            for _ in range(4):
                reply = c.chat.completions.create(model="m", messages=messages, tools=TOOLS)
                message = reply.choices[0].message.model_dump(exclude_none=True)
                answers = loop.review(messages, message)
                messages.append(message)
                if answers is not None:  # sent back: the critique is the tool's answer
                    messages += answers
                    continue
                if not message.get("tool_calls"):
                    break
                for call in message["tool_calls"]:
                    messages.append({"role": "tool", "tool_call_id": call["id"], "content": '{"status": "cancelled"}'})
    finally:
        OpenAIInstrumentor().uninstrument()
        provider.shutdown()
    assert loop.revisions == 0 and loop.last is not None and loop.last.allowed
    wait_for(lambda: len(processor.store.recent_traces()) == 1)
    assert processor.store.recent_traces()[0].outcome == "recovered"
    assert metric_total(processor, "agent_eval_guard_recoveries_total") >= 1


def test_with_a_downstream_the_store_keeps_the_results(tmp_path: Path, running: Callable[..., Processor]) -> None:
    """`traces`, `show` and `report --store` work in production too: the results are kept, the spans are in the
    trace store."""
    with OtlpReceiver() as downstream:
        processor = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}"))
        sent = send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == sent)
        wait_for(lambda: len(processor.store.recent_traces()) == 2)
        stored = processor.store.recent_traces()
    assert all(t.outcome == "terminal" and t.agent == "shop" and t.spans == b"" for t in stored)
    assert all("terminal:tool.wrong_arguments" in t.modes for t in stored)


def test_the_store_keeps_the_newest_traces(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", max_traces=5)
    for i in range(201):  # pruned every 100 saves: at the 1st, the 101st and the 201st
        store.save_trace(f"{i:032x}", None, [{"outcome": "success", "failures": []}], b"")
    kept = store.recent_traces(limit=1000)
    store.close()
    assert [int(t.trace_id, 16) for t in kept] == list(range(200, 194, -1))  # the 5 newest, and the one just saved
