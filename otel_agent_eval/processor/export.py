"""Hands labelled traces on to the downstream (a Collector, Jaeger, Tempo, Phoenix) from the on-disk outbox.

Requests leave the outbox only once the downstream accepted them: during an outage they wait on disk, retried
with exponential backoff, and a restart picks them up again. OTLP/gRPC (``grpc://host:port``) and OTLP/HTTP
protobuf (``http(s)://host:port/v1/traces``).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlparse

import grpc

from .metrics import ProcessorMetrics
from .store import Store

logger = logging.getLogger(__name__)


def sender_for(
    downstream: str, *, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> Callable[[bytes], None]:
    """A function that delivers one serialized export request to the downstream, or raises."""
    url = urlparse(downstream if "://" in downstream else f"grpc://{downstream}")
    if url.scheme in ("grpc", "grpcs"):
        target = url.netloc
        channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials())
            if url.scheme == "grpcs"
            else grpc.insecure_channel(target)
        )
        # The payload is already a serialized request: sent as it is, not parsed and serialized again.
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        metadata = tuple((k.lower(), v) for k, v in (headers or {}).items())

        def send_grpc(payload: bytes) -> None:
            export(payload, timeout=timeout, metadata=metadata)

        return send_grpc
    if url.scheme in ("http", "https"):
        endpoint = downstream if url.path not in ("", "/") else downstream.rstrip("/") + "/v1/traces"

        def send_http(payload: bytes) -> None:
            request = urllib.request.Request(
                endpoint,
                data=payload,
                method="POST",
                headers={"Content-Type": "application/x-protobuf", **(headers or {})},
            )
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()

        return send_http
    raise ValueError(f"downstream {downstream!r}: use grpc://HOST:PORT, http://HOST:PORT or https://HOST:PORT")


class OutboxExporter:
    """A thread that empties the outbox into the downstream, in order, with backoff on failure."""

    def __init__(
        self,
        store: Store,
        send: Callable[[bytes], None],
        metrics: ProcessorMetrics,
        *,
        batch: int = 64,
        min_backoff: float = 0.2,
        max_backoff: float = 30.0,
    ) -> None:
        self.store = store
        self.send = send
        self.metrics = metrics
        self.batch = batch
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agent-eval-export", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        backoff = self.min_backoff
        while not self._stop.is_set():
            if self.flush_once():
                backoff = self.min_backoff
                if not self.store.outbox_size():
                    self._wake.wait(0.05)
                    self._wake.clear()
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def flush_once(self) -> bool:
        """Send what is queued, oldest first, up to ``batch`` requests in one export; False when the downstream
        does not take it (the requests stay queued)."""
        rows = self.store.outbox_peek(self.batch)
        if not rows:
            return True
        ids = [row_id for row_id, _, _ in rows]
        # Serialized requests concatenated are one request with all their spans (protobuf merges repeated fields).
        payload = b"".join(payload for _, payload, _ in rows)
        try:
            self.send(payload)
        except (grpc.RpcError, urllib.error.URLError, OSError, ValueError) as exc:
            self.metrics.export_failures.add(1)
            self.store.outbox_failed(ids)
            logger.warning(
                "downstream refused or unreachable (%s); %d requests wait on disk",
                type(exc).__name__,
                self.store.outbox_size(),
            )
            return False
        self.store.outbox_done(ids)
        self.metrics.spans_exported.add(sum(spans for _, _, spans in rows))
        return True

    def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop, after trying for up to ``drain_seconds`` to empty the outbox (what remains stays on disk)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        deadline = threading.Event()
        timer = threading.Timer(drain_seconds, deadline.set)
        timer.start()
        try:
            while self.store.outbox_size() and not deadline.is_set():
                if not self.flush_once():
                    deadline.wait(self.min_backoff)
        finally:
            timer.cancel()
