"""Hands labelled traces on to the downstream (a Collector, Jaeger, Tempo, Phoenix) from the on-disk outbox.

Requests leave the outbox only once the downstream accepted them, or refused them for good. OTLP/gRPC
(``grpc://host:port``) and OTLP/HTTP protobuf (``http(s)://host:port/v1/traces``).

* **Batches** are built from the outbox head, in order, up to ``max_requests`` requests and ``max_bytes`` bytes
  (4 MB by default: below gRPC's default 4 MiB receive limit); a request larger than that goes alone.
* **Transient refusals** (what OTLP says to retry: gRPC ``CANCELLED``, ``DEADLINE_EXCEEDED``, ``ABORTED``,
  ``OUT_OF_RANGE``, ``UNAVAILABLE``, ``DATA_LOSS``, ``RESOURCE_EXHAUSTED`` with ``RetryInfo``; HTTP 429, 502, 503,
  504; no connection, no answer) keep the batch on disk, retried with capped exponential backoff and full jitter,
  or after the ``Retry-After`` / ``RetryInfo`` delay the downstream asked for. Nothing is ever dropped for them.
* **Other refusals** (``INVALID_ARGUMENT``, ``INTERNAL`` -- a Collector's answer to a request it cannot
  unmarshal --, ``RESOURCE_EXHAUSTED`` without ``RetryInfo`` -- over its size limit --, HTTP 400, 413 and every
  other 4xx / 5xx) say something is wrong with the data, or with the downstream itself. An empty export tells
  which: refused too, the downstream refuses everything (a bad token or address, say): the batch is held and
  retried as for a transient refusal, logged at ERROR, since moving the whole outbox aside would help no one.
  Accepted, the refusal is about the data: the batch is split in halves, and halves again, until the requests
  that are refused alone are found; each moves to the dead letters (the store's ``deadletter`` table, counted in
  ``agent_eval_deadletters_total{reason}``, logged at WARNING), and the rest flows on.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import email.utils
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .metrics import ProcessorMetrics
from .security import StartupError, check_downstream
from .settings import Component, setting
from .store import OutboxRow, Store

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4_000_000  # gRPC's default receive limit is 4 MiB (4,194,304 bytes)
DEFAULT_MAX_REQUESTS = 64


@dataclass(frozen=True)
class ExporterConfig(Component):
    """Where labelled traces go, how they are batched, and how refusals are retried."""

    section = "exporter"
    downstream: str | None = setting(
        None,
        "Where labelled traces go: grpc://HOST:PORT or http(s)://HOST:PORT[/v1/traces]. Default: "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT; without any, the embedded "
        "store in --data-dir.",
    )
    downstream_headers: dict[str, str] = setting(
        {},
        "A header sent to the downstream (e.g. authorization=Bearer ...); repeatable.",
        flag="downstream-header",
        metavar="NAME=VALUE",
        secret=True,
    )
    export_max_bytes: int = setting(
        DEFAULT_MAX_BYTES,
        "Bytes of one export to the downstream at most (below gRPC's default 4 MiB receive limit); a request "
        "larger than that is sent alone. Refused as too large (RESOURCE_EXHAUSTED, 413), a batch is split in "
        "halves.",
        minimum=1,
    )
    export_max_requests: int = setting(
        DEFAULT_MAX_REQUESTS, "Outbox requests (one trace each) in one export at most.", minimum=1
    )
    export_min_backoff: float = setting(
        0.2,
        "Seconds before the first retry of a transient refusal (UNAVAILABLE, 503, no connection); each retry "
        "doubles it, up to --export-max-backoff, with full jitter.",
        minimum=0,
        min_open=True,
    )
    export_max_backoff: float = setting(
        30.0,
        "Seconds between retries at most (also caps a Retry-After / RetryInfo delay the downstream asks for).",
        minimum=0,
        min_open=True,
    )
    drain_seconds: float = setting(
        10.0,
        "On SIGTERM, how long to keep delivering the outbox (the rest stays on disk for the next start).",
        minimum=0,
    )

    def validate(self) -> None:
        super().validate()
        if self.downstream:
            check_downstream(self.downstream)
        if self.export_min_backoff > self.export_max_backoff:
            raise StartupError(
                f"exporter.export_min_backoff (--export-min-backoff) {self.export_min_backoff}: must be at most "
                f"the maximum, exporter.export_max_backoff (--export-max-backoff) {self.export_max_backoff}"
            )


MESSAGE_CHARS = 200  # of a downstream's status message, kept and logged (never span content of ours)

# OTLP/gRPC: the codes a client should retry (RESOURCE_EXHAUSTED only with RetryInfo); OTLP/HTTP: the statuses.
RETRYABLE_GRPC = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_USUAL_GRPC_REFUSALS = ("INVALID_ARGUMENT", "INTERNAL", "RESOURCE_EXHAUSTED")


@dataclass(frozen=True)
class Refusal:
    """Why the downstream did not take an export."""

    retryable: bool
    reason: str  # the status code's name (UNAVAILABLE, INVALID_ARGUMENT, HTTP_400), or the error's type
    code: int  # the gRPC status code's number, the HTTP status, or -1 (no answer)
    message: str  # the downstream's status message, truncated
    retry_after: float | None = None  # seconds the downstream asked to wait (Retry-After, RetryInfo)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}" if self.message else self.reason


def classify(exc: BaseException) -> Refusal:
    """What a failed send means, by the OTLP specification's retry rules. Never raises: what cannot be read
    of the refusal makes it transient (retried), never lost."""
    try:
        return _classify(exc)
    except Exception as error:
        return Refusal(True, type(exc).__name__, -1, _short(f"(unreadable refusal: {type(error).__name__})"))


def _classify(exc: BaseException) -> Refusal:
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        code = exc.code()
        message = _short(exc.details() or "")
        retry_after = _retry_info(exc.trailing_metadata())
        if code is None:
            return Refusal(True, type(exc).__name__, -1, message)
        number = int(code.value[0])
        retryable = code in RETRYABLE_GRPC or (code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None)
        return Refusal(retryable, code.name, number, message, retry_after)
    if isinstance(exc, urllib.error.HTTPError):
        body = b""
        with contextlib.suppress(OSError, http.client.HTTPException):
            body = exc.read()
        return Refusal(
            exc.code in RETRYABLE_HTTP,
            f"HTTP_{exc.code}",
            exc.code,
            _short(_http_message(body, exc.headers.get("Content-Type") or "") or str(exc.reason or "")),
            _retry_after(exc.headers.get("Retry-After")),
        )
    if isinstance(exc, urllib.error.URLError):  # no connection: retried (the reason is an OSError, say)
        reason = exc.reason
        name = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
        return Refusal(True, name, -1, _short(str(reason)))
    # A connection reset, a timeout, an answer cut short (http.client), or anything else: retried, never dropped.
    return Refusal(True, type(exc).__name__, -1, _short(str(exc)))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def _http_message(body: bytes, content_type: str) -> str:
    """The message of an OTLP/HTTP failure: a google.rpc.Status (protobuf or JSON), or plain text."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-protobuf":
        try:
            return str(status_pb2.Status.FromString(body).message)
        except DecodeError:
            return ""
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return ""
        return str(data.get("message", "")) if isinstance(data, dict) else ""
    return body.decode("utf-8", "replace")


def _retry_info(metadata: object) -> float | None:
    """The delay of a google.rpc.RetryInfo in a gRPC status's details (``grpc-status-details-bin``)."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                delay = float(info.retry_delay.seconds) + float(info.retry_delay.nanos) / 1e9
                return max(delay, 0.0)
    return None


def _retry_after(value: str | None) -> float | None:
    """An HTTP Retry-After: seconds, or a date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def display(downstream: str) -> str:
    """The downstream's address as logged and kept: without a user or password."""
    url = urlparse(downstream if "://" in downstream else f"grpc://{downstream}")
    if url.username is None and url.password is None:
        return downstream
    host = url.hostname or ""
    return url._replace(netloc=host + (f":{url.port}" if url.port else "")).geturl()


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
            _partial_success(downstream, export(payload, timeout=timeout, metadata=metadata))

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
                body = response.read()
                if (response.headers.get("Content-Type") or "").startswith("application/x-protobuf"):
                    _partial_success(downstream, body)

        return send_http
    raise ValueError(f"downstream {downstream!r}: use grpc://HOST:PORT, http://HOST:PORT or https://HOST:PORT")


def _partial_success(downstream: str, raw: object) -> None:
    """A partial success is not retried (OTLP): what the downstream rejected is logged."""
    if not isinstance(raw, bytes) or not raw:
        return
    try:
        partial = ExportTraceServiceResponse.FromString(raw).partial_success
    except DecodeError:
        return
    if partial.rejected_spans or partial.error_message:
        logger.warning(
            "downstream %s took the export but rejected %d spans: %s",
            display(downstream),
            partial.rejected_spans,
            _short(partial.error_message) or "(no message)",
        )


@dataclass(frozen=True)
class Handoff:
    """A labelled trace handed to the exporter in memory: its request, and where its spans still are on disk."""

    payload: bytes
    spans: int
    trace_id: bytes
    inbox_ids: frozenset[int]


class OutboxExporter:
    """A thread that delivers labelled traces to the downstream, in order, in batches; one request never blocks it.

    A trace comes in memory (:meth:`offer`) when nothing waits in the outbox: sent at once, it leaves the inbox
    when the downstream takes it, and is never written a second time. What the downstream does not take at once
    (any refusal, an outage) goes to the outbox, in one transaction with leaving the inbox, and from there is
    retried, split or dead-lettered as before; so does what is still in memory when the exporter stops."""

    def __init__(
        self,
        store: Store,
        send: Callable[[bytes], None],
        metrics: ProcessorMetrics,
        *,
        downstream: str = "the downstream",
        max_requests: int = DEFAULT_MAX_REQUESTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_backoff: float = 0.2,
        max_backoff: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_requests < 1:
            raise ValueError(f"--export-max-requests {max_requests}: must be at least 1")
        if max_bytes < 1:
            raise ValueError(f"--export-max-bytes {max_bytes}: must be at least 1")
        if not 0 < min_backoff <= max_backoff:
            raise ValueError(
                f"--export-min-backoff {min_backoff}, --export-max-backoff {max_backoff}: the minimum must be over 0 "
                "and at most the maximum"
            )
        self.store = store
        self.send = send
        self.metrics = metrics
        self.downstream = display(downstream)
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retry_in = min_backoff  # how long to wait after a flush that left requests held
        self._random = rng or random.Random()
        # The usual reasons' series start at 0, so that the first dead letter is an increase (Prometheus' rate()
        # sees nothing in a series whose first sample already counts it).
        usual = ("HTTP_400", "HTTP_413") if self.downstream.startswith("http") else _USUAL_GRPC_REFUSALS
        for reason in usual:
            metrics.deadletters.add(0, {"reason": reason})
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._handoffs: collections.deque[Handoff] = collections.deque()
        self._undone: list[tuple[bytes, set[int]]] = []  # delivered, not yet out of the inbox (a store error)
        self._handoff_bytes = 0
        self._handoff_lock = threading.Lock()
        self._outbox_empty = self.store.outbox_size() == 0
        """Whether the outbox was empty at the last look: traces are taken in memory only behind an empty one."""

    @property
    def thread(self) -> threading.Thread | None:
        """The background thread, once started."""
        return self._thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agent-eval-export", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def offer(self, handoff: Handoff) -> bool:
        """Take a labelled trace in memory, to send at once; False (the caller writes it to the outbox) when
        requests wait in the outbox (they go first, in order) or when memory holds a few batches already: then
        those go to the outbox first, so that the caller's trace queues behind them, in order."""
        with self._handoff_lock:
            if self._stop.is_set() or not self._outbox_empty:
                return False
            full = (
                len(self._handoffs) >= 4 * self.max_requests
                or self._handoff_bytes + len(handoff.payload) > 4 * self.max_bytes
            )
            if not full:
                self._handoffs.append(handoff)
                self._handoff_bytes += len(handoff.payload)
        if full:
            self._spill_all()  # the downstream is not keeping up: what waits in memory waits on disk
            return False
        self._wake.set()
        return True

    def _take_handoffs(self) -> list[Handoff]:
        """The oldest handoffs that fit in one batch (the first alone when it is larger than a batch)."""
        batch: list[Handoff] = []
        size = 0
        with self._handoff_lock:
            while self._handoffs and len(batch) < self.max_requests:
                head = self._handoffs[0]
                if batch and size + len(head.payload) > self.max_bytes:
                    break
                batch.append(self._handoffs.popleft())
                size += len(head.payload)
                self._handoff_bytes -= len(head.payload)
        return batch

    def _deliver_handoffs(self, batch: list[Handoff]) -> bool:
        try:
            self.send(b"".join(h.payload for h in batch))
        except Exception as exc:  # whatever it was, the outbox takes it from here: retried, split, dead-lettered
            self.metrics.export_failures.add(1)
            logger.warning(
                "downstream %s did not take %d request(s) at once (%s); they wait in the outbox",
                self.downstream,
                len(batch),
                classify(exc),
            )
            self._spill(batch)
            self._spill_all()  # those behind it wait on disk too: the downstream is not taking traces now
            return False
        self.metrics.spans_exported.add(sum(h.spans for h in batch))
        self._undone.extend((h.trace_id, set(h.inbox_ids)) for h in batch)
        self._mark_done()
        return True

    def _mark_done(self) -> None:
        """Delivered traces leave the inbox; when the store fails (busy, a disk error) they are kept here and
        marked again at the next flush, so that a delivered trace is neither sent again nor left in the inbox."""
        if self._undone:
            self.store.inbox_done_many(self._undone)
            self._undone = []

    def _spill(self, batch: list[Handoff]) -> None:
        with self._handoff_lock:
            self._outbox_empty = False  # what comes next queues behind these
        try:
            self.store.outbox_add_from_inbox([(h.payload, h.spans, h.trace_id, set(h.inbox_ids)) for h in batch])
        except BaseException:
            # Not on disk as labelled: back in memory, at the head, in order, to be sent or spilled again (else
            # it would wait in the inbox for the next start).
            with self._handoff_lock:
                self._handoffs.extendleft(reversed(batch))
                self._handoff_bytes += sum(len(h.payload) for h in batch)
            raise

    def _spill_all(self) -> None:
        while batch := self._take_handoffs():
            self._spill(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                flushed = self.flush_once()
                idle = flushed and not self._handoffs and not self._undone and not self.store.outbox_size()
            except Exception:  # a store error (the database busy, a disk error): the outbox stays; try again
                wait = min(self.max_backoff, 1.0)
                logger.exception("could not deliver from the outbox; trying again in %.1f s", wait)
                self.metrics.export_failures.add(1)
                self._stop.wait(wait)
                continue
            if not flushed:
                self._stop.wait(self.retry_in)
            elif idle:
                self._wake.wait(0.05)
                self._wake.clear()

    def flush_once(self) -> bool:
        """Send one batch: from the outbox head, or, when the outbox is empty, of the traces taken in memory.
        False when some of it is held (a transient refusal, or a downstream refusing everything): it stays
        queued, to be tried again after :attr:`retry_in` seconds."""
        self._mark_done()
        rows = self.store.outbox_batch(self.max_requests, self.max_bytes)
        if not rows:
            with self._handoff_lock:  # nothing waits on disk: new traces may queue in memory, behind these
                self._outbox_empty = True
            batch = self._take_handoffs()
            if not batch:
                return True
            # Not taken: now in the outbox, where the next flush, after :attr:`retry_in`, treats it as usual.
            return self._deliver_handoffs(batch)
        return self._deliver(rows, probed=False)

    def _deliver(self, rows: list[OutboxRow], *, probed: bool) -> bool:
        # Serialized requests concatenated are one request with all their spans (protobuf merges repeated fields).
        try:
            self.send(b"".join(row.payload for row in rows))
        except Exception as exc:  # every failure is classified; none loses a request
            refusal = classify(exc)
        else:
            self.store.outbox_done([row.id for row in rows])
            self.metrics.spans_exported.add(sum(row.spans for row in rows))
            return True
        self.metrics.export_failures.add(1)
        if refusal.retryable:
            return self._hold(rows, refusal)
        if not probed:
            # Is it the data, or does the downstream refuse everything now? An empty export tells.
            refused_too = self._probe()
            if refused_too is not None:
                return self._hold(rows, refusal, everything=None if refused_too.retryable else refused_too)
        if len(rows) > 1:  # find the request(s) refused alone; the others go on, in order
            half = len(rows) // 2
            return self._deliver(rows[:half], probed=True) and self._deliver(rows[half:], probed=True)
        self._dead_letter(rows[0], refusal)
        return True

    def _probe(self) -> Refusal | None:
        try:
            self.send(ExportTraceServiceRequest().SerializeToString())
        except Exception as exc:
            return classify(exc)
        return None

    def _hold(self, rows: list[OutboxRow], refusal: Refusal, everything: Refusal | None = None) -> bool:
        self.store.outbox_failed([row.id for row in rows])
        attempt = rows[0].attempts + 1  # of the oldest request, counted on disk (across restarts)
        if refusal.retry_after is not None:
            self.retry_in = min(refusal.retry_after, self.max_backoff)
            how = f"as asked, in {self.retry_in:.1f} s"
        else:  # capped exponential backoff, full jitter
            cap = min(self.max_backoff, self.min_backoff * 2 ** min(attempt - 1, 60))
            self.retry_in = self._random.uniform(0, cap)
            how = f"in {self.retry_in:.1f} s"
        if everything is not None:
            logger.error(
                "downstream %s refuses every export, even an empty one (%s; the batch: %s): check --downstream "
                "and --downstream-header; attempt %d of the oldest request, retrying %s; %d requests wait on disk",
                self.downstream,
                everything,
                refusal,
                attempt,
                how,
                self.store.outbox_size(),
            )
        else:
            logger.warning(
                "downstream %s did not take %d request(s) (%s); attempt %d of the oldest, retrying %s; "
                "%d requests wait on disk",
                self.downstream,
                len(rows),
                refusal,
                attempt,
                how,
                self.store.outbox_size(),
            )
        return False

    def _dead_letter(self, row: OutboxRow, refusal: Refusal) -> None:
        trace_ids = trace_ids_of(row.payload)
        self.store.deadletter_add(
            dataclasses.replace(row, attempts=row.attempts + 1),
            reason=refusal.reason,
            code=refusal.code,
            downstream=self.downstream,
            message=refusal.message,
            trace_ids=trace_ids,
        )
        self.metrics.deadletters.add(1, {"reason": refusal.reason})
        logger.warning(
            "downstream %s refused a request for good (%s): its %d spans, trace(s) %s, moved to the dead letters "
            "(otel-agent-eval deadletter list); the rest goes on",
            self.downstream,
            refusal,
            row.spans,
            ", ".join(trace_ids) or "-",
        )

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
            while (self._handoffs or self.store.outbox_size()) and not deadline.is_set():
                if not self.flush_once():
                    deadline.wait(self.retry_in)
        finally:
            timer.cancel()
            self._spill_all()  # on disk for the next start, labelled: not evaluated again
            with contextlib.suppress(Exception):  # else they are in the inbox: evaluated and sent again
                self._mark_done()


def trace_ids_of(payload: bytes) -> list[str]:
    """The trace ids of a serialized request, in hex, each once, in order."""
    try:
        request = ExportTraceServiceRequest.FromString(payload)
    except DecodeError:
        return []
    seen: dict[str, None] = {}
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                seen.setdefault(span.trace_id.hex(), None)
    return list(seen)
