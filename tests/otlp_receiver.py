"""A real OTLP/gRPC trace receiver on loopback, for tests: it keeps every export request it is sent.

As a downstream that misbehaves: ``fail`` answers a request with an error status instead (``(code, message)``,
or ``(code, message, trailing metadata)``), ``max_receive_bytes`` is gRPC's own receive limit (larger
requests get ``RESOURCE_EXHAUSTED`` from the library, as from a Collector).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        answer = self.receiver.fail(request) if self.receiver.fail is not None else None
        with self.receiver.lock:
            self.receiver.calls += 1
            if answer is None:
                self.receiver.requests.append(request)
            else:
                self.receiver.refused.append((answer[0], request))
        if answer is not None:
            if len(answer) > 2:
                context.set_trailing_metadata(answer[2])
            context.abort(answer[0], answer[1])
        return trace_service_pb2.ExportTraceServiceResponse()


Fail = Callable[[trace_service_pb2.ExportTraceServiceRequest], tuple[Any, ...] | None]


class OtlpReceiver:
    def __init__(self, fail: Fail | None = None, max_receive_bytes: int | None = None) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.refused: list[tuple[grpc.StatusCode, trace_service_pb2.ExportTraceServiceRequest]] = []
        self.calls = 0
        self.fail = fail
        self.lock = threading.Lock()
        options = [("grpc.max_receive_message_length", max_receive_bytes)] if max_receive_bytes else []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)

    def span_count(self) -> int:
        with self.lock:
            return sum(len(ss.spans) for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans)

    def trace_ids(self) -> list[bytes]:
        """The trace ids of the spans received, in the order received (with repeats)."""
        with self.lock:
            requests = list(self.requests)
        return [s.trace_id for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
