"""The outbox never blocks on one request: exports capped in bytes and requests, a batch too large for the
downstream split, a request refused for good moved to the dead letters (the rest delivered), transient
refusals retried with backoff, a downstream refusing everything held; and spans with malformed ids refused at
the receiver. On loopback, against real gRPC and HTTP servers and the project's real Collector."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from helpers import stop_process
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otlp_receiver import OtlpReceiver
from test_processor import _post, config, free_port, metric_total, send_runs, wait_for

from otel_agent_eval.processor import Processor
from otel_agent_eval.processor.export import Handoff, OutboxExporter, classify, sender_for
from otel_agent_eval.processor.metrics import ProcessorMetrics
from otel_agent_eval.processor.store import Store
from otel_agent_eval.processor.validation import InvalidRequest, validate_request

POISON = b"\x0b" * 16


def trace_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def trace_request(tid: bytes, spans: int = 1, pad: int = 0) -> bytes:
    """One trace's request, as the pipeline queues it; ``pad`` bytes of attribute per span."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        span = scope.spans.add(trace_id=tid, span_id=(i + 1).to_bytes(8, "big"), name="step")
        if pad:
            span.attributes.add(key="pad").value.string_value = "x" * pad
    return request.SerializeToString()


def refuse_trace(tid: bytes, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> Any:
    """A downstream answer: ``code`` for any request holding a span of trace ``tid``."""

    def fail(request: ExportTraceServiceRequest) -> tuple[Any, ...] | None:
        held = any(s.trace_id == tid for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)
        return (code, "bad span: unmarshal: invalid TraceID length") if held else None

    return fail


def refuse_calls(n: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> Any:
    """A downstream answer: ``code`` for the first ``n`` calls."""
    left = [n]

    def fail(request: ExportTraceServiceRequest) -> tuple[Any, ...] | None:
        if left[0] > 0:
            left[0] -= 1
            return (code, "try later")
        return None

    return fail


class Harness:
    """An exporter on a store of its own, driven by hand (no thread): what each flush does is seen."""

    def __init__(self, tmp_path: Path, downstream: str, **options: Any) -> None:
        self.store = Store(tmp_path / "outbox.sqlite")
        self.reader = InMemoryMetricReader()
        self.metrics = ProcessorMetrics([self.reader])
        options = {"min_backoff": 0.01, "max_backoff": 0.05, **options}
        self.exporter = OutboxExporter(
            self.store, sender_for(downstream), self.metrics, downstream=downstream, **options
        )

    def queue(self, *payloads: bytes) -> None:
        for payload in payloads:
            self.store.outbox_add(payload, len(list(_spans(payload))))

    def drain(self, timeout: float = 30.0) -> None:
        """Flush until the outbox is empty (waiting out the backoff the exporter asks for)."""
        done = threading.Event()

        def empty() -> bool:
            if not self.store.outbox_size():
                return True
            if not self.exporter.flush_once():
                done.wait(self.exporter.retry_in)
            return not self.store.outbox_size()

        wait_for(empty, timeout=timeout)

    def counter(self, name: str, **labels: str) -> float:
        data = self.reader.get_metrics_data()
        return sum(
            point.value
            for rm in (data.resource_metrics if data else ())
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
            if all((point.attributes or {}).get(k) == v for k, v in labels.items())
        )

    def close(self) -> None:
        self.metrics.shutdown()
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(downstream: str, **options: Any) -> Harness:
        made.append(Harness(tmp_path, downstream, **options))
        return made[-1]

    yield make
    for h in made:
        h.close()


def _spans(payload: bytes) -> Iterator[Any]:
    request = ExportTraceServiceRequest.FromString(payload)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            yield from ss.spans


# --- batches: the byte cap, and a batch too large for the downstream ---------------------------------------------


def test_exports_respect_the_byte_cap(harness: Callable[..., Harness]) -> None:
    with OtlpReceiver() as downstream:
        h = harness(f"grpc://{downstream.endpoint}", max_bytes=1_000_000)
        h.queue(*(trace_request(trace_id(i), pad=200_000) for i in range(30)))  # 30 x ~200 kB: 6 MB queued
        h.queue(trace_request(trace_id(99), pad=1_200_000))  # larger than the cap: sent alone
        h.drain()
        with downstream.lock:
            sizes = [r.ByteSize() for r in downstream.requests]
            per_export = [len(r.resource_spans) for r in downstream.requests]
    assert sorted(downstream.trace_ids()) == sorted([trace_id(i) for i in range(30)] + [trace_id(99)])
    assert max(sizes[:-1]) <= 1_000_000 and sizes[-1] > 1_000_000 and per_export[-1] == 1
    assert max(per_export) > 1  # still batched: several requests in one export, up to the cap
    assert h.store.deadletter_size() == 0


def test_exports_respect_the_request_cap(harness: Callable[..., Harness]) -> None:
    with OtlpReceiver() as downstream:
        h = harness(f"grpc://{downstream.endpoint}", max_requests=4)
        h.queue(*(trace_request(trace_id(i)) for i in range(10)))
        h.drain()
        with downstream.lock:
            per_export = [len(r.resource_spans) for r in downstream.requests]
    assert per_export == [4, 4, 2]


def test_a_batch_over_the_downstream_limit_is_split_and_delivered(
    harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # gRPC's own receive limit on the downstream (as a Collector's 4 MiB), below our 4 MB cap.
    with OtlpReceiver(max_receive_bytes=1_000_000) as downstream:
        h = harness(f"grpc://{downstream.endpoint}")
        h.queue(*(trace_request(trace_id(i), pad=300_000) for i in range(6)))
        h.queue(trace_request(trace_id(50), pad=1_500_000))  # too large even alone
        h.queue(*(trace_request(trace_id(i), pad=300_000) for i in range(6, 12)))
        with caplog.at_level(logging.WARNING, logger="otel_agent_eval.processor.export"):
            h.drain()
    assert sorted(downstream.trace_ids()) == [trace_id(i) for i in range(12)]
    [dead] = h.store.deadletters()
    assert dead.reason == "RESOURCE_EXHAUSTED" and dead.trace_ids == [trace_id(50).hex()]
    assert "larger than max" in dead.message
    assert h.counter("agent_eval.deadletters", reason="RESOURCE_EXHAUSTED") == 1
    assert any("RESOURCE_EXHAUSTED" in r.message and trace_id(50).hex() in r.message for r in caplog.records)


# --- refused for good: dead letters --------------------------------------------------------------------------------


def test_a_poisoned_request_is_dead_lettered_and_everything_after_it_delivered(
    tmp_path: Path, running: Callable[..., Processor], caplog: pytest.LogCaptureFixture
) -> None:
    with OtlpReceiver(fail=refuse_trace(POISON)) as downstream:
        processor = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}", export_min_backoff=0.01))
        with caplog.at_level(logging.WARNING, logger="otel_agent_eval.processor.export"):
            for i in range(5):
                processor.store.outbox_add(trace_request(trace_id(i)), 1)
            processor.store.outbox_add(trace_request(POISON, spans=2), 2)
            for i in range(5, 10):
                processor.store.outbox_add(trace_request(trace_id(i)), 1)
            processor.exporter.wake()  # type: ignore[union-attr]
            sent = send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
            wait_for(lambda: downstream.span_count() == 10 + sent and processor.store.outbox_size() == 0)
    assert POISON not in downstream.trace_ids()
    [dead] = processor.store.deadletters()
    assert (dead.reason, dead.code, dead.spans, dead.trace_ids) == ("INVALID_ARGUMENT", 3, 2, [POISON.hex()])
    assert dead.downstream == f"grpc://{downstream.endpoint}" and "invalid TraceID length" in dead.message
    assert processor.store.deadletter_payload(dead.id) == trace_request(POISON, spans=2)
    assert metric_total(processor, "agent_eval_deadletters_total", reason="INVALID_ARGUMENT") == 1
    [warning] = [r for r in caplog.records if "dead letters" in r.message]
    assert warning.levelno == logging.WARNING
    assert "INVALID_ARGUMENT" in warning.message and downstream.endpoint in warning.message
    assert POISON.hex() in warning.message


def test_a_restart_with_a_dead_letter_in_the_store_does_not_block(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    with OtlpReceiver(fail=refuse_trace(POISON)) as downstream:
        first = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}", export_min_backoff=0.01))
        first.store.outbox_add(trace_request(POISON), 1)
        first.exporter.wake()  # type: ignore[union-attr]
        wait_for(lambda: first.store.deadletter_size() == 1)
        first.stop()
        downstream.fail = None  # even a downstream that would take it now: a dead letter waits for `replay`
        second = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}"))
        assert second.store.deadletter_size() == 1
        sent = send_runs(second.grpc.endpoint, runs=3)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == sent)
        second.stop()
    assert POISON not in downstream.trace_ids()
    reopened = Store(tmp_path / "data" / "agent-eval.sqlite")
    assert reopened.deadletter_size() == 1 and reopened.outbox_size() == 0
    reopened.close()


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION]
)
def test_a_permanent_refusal_is_found_in_its_batch(harness: Callable[..., Harness], code: grpc.StatusCode) -> None:
    with OtlpReceiver(fail=refuse_trace(POISON, code)) as downstream:
        h = harness(f"grpc://{downstream.endpoint}")
        h.queue(*(trace_request(trace_id(i)) for i in range(20)), trace_request(POISON))
        h.queue(*(trace_request(trace_id(i)) for i in range(20, 40)))
        h.drain()
    assert downstream.trace_ids() == [trace_id(i) for i in range(40)]  # in order, each once
    [dead] = h.store.deadletters()
    assert dead.reason == code.name and dead.attempts == 1
    assert h.counter("agent_eval.deadletters", reason=code.name) == 1


def test_a_downstream_refusing_everything_holds_the_outbox(harness: Callable[..., Harness]) -> None:
    """UNAUTHENTICATED for every export, an empty one too (a wrong token): not the data's fault, so nothing is
    dead-lettered; the requests wait, their attempts counted, and go once the downstream takes them."""
    refuse_all = lambda request: (grpc.StatusCode.UNAUTHENTICATED, "bad token")  # noqa: E731
    with OtlpReceiver(fail=refuse_all) as downstream:
        h = harness(f"grpc://{downstream.endpoint}")
        h.queue(*(trace_request(trace_id(i)) for i in range(5)))
        for _ in range(3):
            assert h.exporter.flush_once() is False
        assert h.store.deadletter_size() == 0 and h.store.outbox_size() == 5
        assert [row.attempts for row in h.store.outbox_batch(10, 10**9)] == [3] * 5
        downstream.fail = None
        h.drain()
    assert downstream.trace_ids() == [trace_id(i) for i in range(5)]


# --- transient refusals: retried, with backoff --------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED]
)
def test_transient_refusals_are_retried_then_delivered(
    harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture, code: grpc.StatusCode
) -> None:
    with OtlpReceiver(fail=refuse_calls(3, code)) as downstream:
        h = harness(f"grpc://{downstream.endpoint}")
        h.queue(*(trace_request(trace_id(i)) for i in range(4)))
        with caplog.at_level(logging.WARNING, logger="otel_agent_eval.processor.export"):
            h.drain()
    assert downstream.trace_ids() == [trace_id(i) for i in range(4)]
    assert h.store.deadletter_size() == 0 and h.counter("agent_eval.export.failures") == 3
    held = [r.message for r in caplog.records if "did not take" in r.message]
    assert len(held) == 3 and code.name in held[0] and "attempt 3 " in held[2]


def test_an_outage_loses_nothing_and_is_never_dead_lettered(harness: Callable[..., Harness]) -> None:
    port = free_port()  # nothing listens there yet: UNAVAILABLE, from the client library
    h = harness(f"grpc://127.0.0.1:{port}")
    h.queue(*(trace_request(trace_id(i)) for i in range(3)))
    for _ in range(3):
        assert h.exporter.flush_once() is False
    assert h.store.outbox_size() == 3 and h.store.deadletter_size() == 0
    downstream = OtlpReceiver()
    downstream.server.add_insecure_port(f"127.0.0.1:{port}")
    with downstream:
        h.drain()
    assert downstream.trace_ids() == [trace_id(i) for i in range(3)]


def test_backoff_is_exponential_capped_and_jittered(harness: Callable[..., Harness]) -> None:
    h = harness(f"grpc://127.0.0.1:{free_port()}", min_backoff=0.5, max_backoff=4.0)
    h.queue(trace_request(trace_id(1)))
    waits = []
    for attempt in range(1, 9):
        assert h.exporter.flush_once() is False
        waits.append(h.exporter.retry_in)
        assert 0 <= h.exporter.retry_in <= min(4.0, 0.5 * 2 ** (attempt - 1))
    assert len(set(waits)) == len(waits)  # jittered
    assert h.store.outbox_batch(1, 10**9)[0].attempts == 8  # read back from disk: it survives a restart


def test_resource_exhausted_with_retry_info_is_throttling(harness: Callable[..., Harness]) -> None:
    """RESOURCE_EXHAUSTED with a RetryInfo is the downstream asking to slow down (OTLP): retried after its delay
    (up to the maximum backoff), never split nor dead-lettered."""
    status = status_pb2.Status(code=8, message="slow down")
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = 3
    status.details.add().Pack(info)
    throttled = [True]

    def fail(request: ExportTraceServiceRequest) -> tuple[Any, ...] | None:
        if throttled[0]:
            return (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "slow down",
                (("grpc-status-details-bin", status.SerializeToString()),),
            )
        return None

    with OtlpReceiver(fail=fail) as downstream:
        h = harness(f"grpc://{downstream.endpoint}", min_backoff=0.01, max_backoff=10.0)
        h.queue(trace_request(trace_id(1)), trace_request(trace_id(2)))
        assert h.exporter.flush_once() is False
        assert h.exporter.retry_in == 3.0
        assert h.store.deadletter_size() == 0 and downstream.calls == 1  # no split, no probe
        throttled[0] = False
        h.drain()
    assert downstream.trace_ids() == [trace_id(1), trace_id(2)]


def test_the_otlp_retry_table() -> None:
    """Every gRPC status code classified as the OTLP specification says."""
    retryable = {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
    codes = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]
    answer: list[grpc.StatusCode] = []
    with OtlpReceiver(fail=lambda request: (answer[0], "no")) as downstream:
        send = sender_for(f"grpc://{downstream.endpoint}")
        for code in codes:
            answer[:] = [code]
            with pytest.raises(grpc.RpcError) as refused:
                send(trace_request(trace_id(1)))
            refusal = classify(refused.value)
            assert (refusal.reason, refusal.retryable) == (code.name, code.name in retryable), code


# --- OTLP/HTTP downstreams -----------------------------------------------------------------------------------------


class HttpDownstream:
    """An OTLP/HTTP downstream on loopback; ``answer(body)`` gives (status, headers, body) or None (200)."""

    def __init__(self, answer: Callable[[bytes], tuple[int, dict[str, str], bytes] | None]) -> None:
        self.answer = answer
        self.requests: list[ExportTraceServiceRequest] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = outer.answer(body)
                if reply is None:
                    outer.requests.append(ExportTraceServiceRequest.FromString(body))
                    reply = (200, {"Content-Type": "application/x-protobuf"}, b"")
                status, headers, payload = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpDownstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def trace_ids(self) -> list[bytes]:
        return [s.trace_id for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _status(message: str) -> bytes:
    return status_pb2.Status(code=3, message=message).SerializeToString()


def test_http_downstream_400_413_and_retry_after(harness: Callable[..., Harness]) -> None:
    busy = [2]

    def answer(body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        if busy[0] > 0:
            busy[0] -= 1
            return 503, {"Retry-After": "2"}, b"busy"
        if len(body) > 500_000:
            return 413, {"Content-Type": "text/plain"}, b"too large"
        if POISON in body:
            return 400, {"Content-Type": "application/x-protobuf"}, _status("invalid TraceID length")
        return None

    with HttpDownstream(answer) as downstream:
        h = harness(downstream.url, min_backoff=0.01, max_backoff=0.05)
        h.queue(*(trace_request(trace_id(i), pad=100_000) for i in range(8)))  # 800 kB: split once
        h.queue(trace_request(POISON), trace_request(trace_id(8), pad=600_000), trace_request(trace_id(9)))
        assert h.exporter.flush_once() is False
        assert h.exporter.retry_in == 0.05  # Retry-After: 2, honoured up to the maximum backoff
        h.drain()
    assert downstream.trace_ids() == [trace_id(i) for i in range(8)] + [trace_id(9)]
    dead = {d.trace_ids[0]: d for d in h.store.deadletters()}
    assert dead[POISON.hex()].reason == "HTTP_400" and dead[POISON.hex()].message == "invalid TraceID length"
    assert dead[trace_id(8).hex()].reason == "HTTP_413" and dead[trace_id(8).hex()].message == "too large"


def test_http_retry_after_is_honoured(harness: Callable[..., Harness]) -> None:
    with HttpDownstream(lambda body: (429, {"Retry-After": "3"}, b"") if body else None) as downstream:
        h = harness(downstream.url, min_backoff=0.01, max_backoff=60.0)
        h.queue(trace_request(trace_id(1)))
        assert h.exporter.flush_once() is False
        assert h.exporter.retry_in == 3.0
        assert h.store.deadletter_size() == 0


# --- the real Collector downstream -------------------------------------------------------------------------------


@pytest.fixture
def collector(collector_binary: Path, tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """A Collector writing what it receives (OTLP/gRPC and OTLP/HTTP) to a file: (gRPC port, HTTP port, file)."""
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    out = tmp_path / "collected.jsonl"
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(
        f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
exporters:
  file:
    path: {out}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics_port}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""
    )
    with open(tmp_path / "collector.log", "w") as log:
        process = subprocess.Popen([str(collector_binary), "--config", str(cfg)], stdout=log, stderr=log)
    try:

        def listening() -> bool:
            import socket

            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", grpc_port)) == 0

        wait_for(listening, timeout=60)
        yield grpc_port, http_port, out
    finally:
        stop_process(process)


def _collected(out: Path) -> list[str]:
    """Trace ids (hex) of the spans the Collector wrote."""
    if not out.exists():
        return []
    ids = []
    for line in out.read_text().splitlines():
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            continue  # the Collector is still writing this line: the caller waits and reads again
        for rs in document.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                ids += [s["traceId"].lower() for s in ss.get("spans", [])]
    return ids


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_real_collector_refuses_a_malformed_id_which_is_dead_lettered(
    tmp_path: Path, running: Callable[..., Processor], collector: tuple[int, int, Path], protocol: str
) -> None:
    """A request with a 3-byte trace id (queued by an older version that took it) is refused by a real Collector
    as it cannot unmarshal it (gRPC INTERNAL, HTTP 400): dead-lettered; everything around it delivered."""
    from click.testing import CliRunner

    from otel_agent_eval.cli import main

    grpc_port, http_port, out = collector
    downstream = f"grpc://127.0.0.1:{grpc_port}" if protocol == "grpc" else f"http://127.0.0.1:{http_port}/v1/traces"
    processor = running(config(tmp_path, downstream=downstream, export_min_backoff=0.01))
    bad = b"abc"
    for payload in (trace_request(trace_id(1)), trace_request(bad), trace_request(trace_id(2))):
        processor.store.outbox_add(payload, 1)
    processor.exporter.wake()  # type: ignore[union-attr]
    sent = send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
    wait_for(lambda: len(_collected(out)) == 2 + sent and processor.store.outbox_size() == 0, timeout=60)
    assert bad.hex() not in _collected(out)
    [dead] = processor.store.deadletters()
    assert dead.reason == ("INTERNAL" if protocol == "grpc" else "HTTP_400")
    assert "invalid TraceID length" in dead.message and dead.trace_ids == [bad.hex()]
    listed = CliRunner().invoke(main, ["deadletter", "list", "--data-dir", str(tmp_path / "data")])
    assert listed.exit_code == 0 and bad.hex() in listed.stdout and dead.reason in listed.stdout


# --- malformed ids refused at the receiver ---------------------------------------------------------------------


def _malformed(field: str, value: bytes) -> ExportTraceServiceRequest:
    """resource_spans[0].scope_spans[1].spans[3] has ``field`` set to ``value``; everything else is well-formed."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for j in range(2):
        scope = resource.scope_spans.add()
        for k in range(4):
            span = scope.spans.add(trace_id=b"\x01" * 16, span_id=bytes([j + 1, k + 1]) * 4, name="s")
            if (j, k) == (1, 3):
                setattr(span, field, value)
    return request


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("trace_id", b"abc", "resource_spans[0].scope_spans[1].spans[3].trace_id: 3 bytes, expected 16"),
        ("trace_id", b"", "resource_spans[0].scope_spans[1].spans[3].trace_id: 0 bytes, expected 16"),
        ("trace_id", b"\0" * 16, "resource_spans[0].scope_spans[1].spans[3].trace_id: all zero"),
        ("span_id", b"\x01" * 9, "resource_spans[0].scope_spans[1].spans[3].span_id: 9 bytes, expected 8"),
        ("span_id", b"\0" * 8, "resource_spans[0].scope_spans[1].spans[3].span_id: all zero"),
        ("parent_span_id", b"abc", "resource_spans[0].scope_spans[1].spans[3].parent_span_id: 3 bytes, expected 8"),
    ],
)
def test_malformed_ids_are_refused_at_the_receiver(
    tmp_path: Path, running: Callable[..., Processor], field: str, value: bytes, message: str
) -> None:
    processor = running(config(tmp_path, quiet_period=300.0))
    payload = _malformed(field, value).SerializeToString()
    channel = grpc.insecure_channel(processor.grpc.endpoint)  # type: ignore[union-attr]
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as refused:
        export(payload, timeout=10)
    channel.close()
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")
    code, body = _post(f"http://{processor.http.endpoint}/v1/traces", payload, "application/x-protobuf")  # type: ignore[union-attr]
    assert code == 400 and message in body.decode()
    assert processor.store.inbox_size() == 0  # nothing of the request kept: never acknowledged


def test_validation_accepts_what_a_downstream_takes() -> None:
    validate_request(_malformed("parent_span_id", b"\x05" * 8))  # a child span
    request = _malformed("name", "x")
    link = request.resource_spans[0].scope_spans[0].spans[0].links.add(trace_id=b"\0" * 16, span_id=b"\0" * 8)
    validate_request(request)  # a link to an invalid context (recorded for its attributes) is fine
    link.trace_id = b"ab"
    with pytest.raises(InvalidRequest, match=r"spans\[0\]\.links\[0\]\.trace_id: 2 bytes, expected 16"):
        validate_request(request)
    validate_request(ExportTraceServiceRequest())  # empty: nothing to refuse


# --- settings ---------------------------------------------------------------------------------------------------


def test_export_settings(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from otel_agent_eval.cli import main
    from otel_agent_eval.processor.command import serve

    params = serve.make_context("serve", []).params
    assert (params["export_max_bytes"], params["export_max_requests"]) == (4_000_000, 64)
    assert (params["export_min_backoff"], params["export_max_backoff"]) == (0.2, 30.0)
    off = ["--data-dir", str(tmp_path), "--grpc-endpoint", "", "--http-endpoint", "", "--metrics-endpoint", ""]
    for args, message in (
        (["--export-max-bytes", "0"], "--export-max-bytes"),
        (["--export-max-requests", "0"], "--export-max-requests"),
        (["--export-min-backoff", "0"], "--export-min-backoff"),
        (["--export-min-backoff", "5", "--export-max-backoff", "1"], "at most the maximum"),
    ):
        result = CliRunner().invoke(main, ["serve", *off, "--downstream", "grpc://127.0.0.1:1", *args])
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)


# --- labelled traces taken in memory (Handoff): never out of memory and off disk at once, always in order -------


def _inbox_trace(store: Store, n: int) -> Handoff:
    trace_id = bytes([n]) * 16
    inbox_id = store.inbox_add(b"request %d" % n, {trace_id})
    return Handoff(b"labelled %d" % n, 1, trace_id, frozenset({inbox_id}))


def test_a_handoff_that_can_be_neither_sent_nor_spilled_stays_in_memory(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    down, sent = [True], []

    def send(payload: bytes) -> None:
        if down[0]:
            raise grpc.RpcError()  # classified as no connection: transient
        sent.append(payload)

    exporter = OutboxExporter(store, send, ProcessorMetrics([InMemoryMetricReader()]))
    assert exporter.offer(_inbox_trace(store, 1))
    original = store.outbox_add_from_inbox

    def disk_full(items: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store.outbox_add_from_inbox = disk_full  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        exporter.flush_once()  # not sent, not spilled: back in memory, still in the inbox
    assert len(exporter._handoffs) == 1 and store.inbox_size() == 1
    store.outbox_add_from_inbox = original  # type: ignore[method-assign]
    down[0] = False
    while exporter._handoffs or store.outbox_size():
        exporter.flush_once()
    assert b"".join(sent) == b"labelled 1" and store.inbox_size() == 0
    store.close()


def test_a_full_memory_sends_its_traces_to_the_outbox_first_in_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    sent: list[bytes] = []
    exporter = OutboxExporter(store, sent.append, ProcessorMetrics([InMemoryMetricReader()]), max_requests=1)
    traces = [_inbox_trace(store, n) for n in range(6)]
    taken = [exporter.offer(t) for t in traces]  # memory holds 4 x max_requests: the fifth finds it full
    assert taken == [True, True, True, True, False, False]
    for refused in traces[4:]:  # as the pipeline does with a refused trace: behind what was spilled
        store.outbox_add_from_inbox([(refused.payload, 1, refused.trace_id, set(refused.inbox_ids))])
    while exporter._handoffs or store.outbox_size():
        exporter.flush_once()
    assert sent == [t.payload for t in traces]  # in the order they were handed on
    assert store.inbox_size() == 0
    store.close()
