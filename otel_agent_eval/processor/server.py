"""``otel-agent-eval serve``: the processor, assembled from its parts, started and stopped as one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..evaluate import Engine, PackLibrary
from .agent_labels import DEFAULT_MAX_AGENTS, AgentLabels
from .assembly import TraceAssembler
from .export import DEFAULT_MAX_BYTES, DEFAULT_MAX_REQUESTS, OutboxExporter, sender_for
from .http_wire import tls_context
from .metrics import ProcessorMetrics
from .pipeline import Pipeline
from .receivers import GrpcReceiver, HttpReceiver
from .security import (
    DataDirLock,
    StartupError,
    check_downstream,
    check_endpoint,
    listen_failure,
    load_tls,
    prepare_data_dir,
)
from .store import Store

logger = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    grpc_endpoint: str | None = "127.0.0.1:4317"
    http_endpoint: str | None = "127.0.0.1:4318"
    metrics_endpoint: str | None = "127.0.0.1:9464"
    downstream: str | None = None
    downstream_headers: dict[str, str] = field(default_factory=dict)
    data_dir: Path = Path(".agent-eval")
    quiet_period: float = 2.0
    loop_quiet_period: float = 10.0
    max_wait: float = 30.0
    max_traces: int = 10_000
    max_spans_per_trace: int = 5_000
    max_spans_in_flight: int = 200_000
    early_evaluation_interval: float = 5.0
    evaluation_timeout: float = 5.0
    workers: int = 2
    max_payload_bytes: int = 16 * 1024 * 1024
    http_read_timeout: float = 10.0
    """Seconds an HTTP client has to send a whole request, from its first byte; also how long an idle
    connection stays open."""
    bearer_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    service_max_concurrency: int = 4
    """Evaluation service calls (``EvaluateStep``, open ``EvaluateSession`` streams) at once; beyond it a call is
    refused at once with ``RESOURCE_EXHAUSTED``. They run on gRPC worker threads of their own, beside OTLP
    ``Export``'s, so ingestion is never starved by evaluations."""
    service_max_messages: int = 5_000
    """Messages of history in one evaluation service request at most (``RESOURCE_EXHAUSTED`` beyond)."""
    service_max_request_bytes: int = 4 * 1024 * 1024
    """Bytes of one evaluation service request at most (``RESOURCE_EXHAUSTED`` beyond)."""
    policy_packs: tuple[Path, ...] = ()
    pack: str = "auto"
    calibration: Path | None = Path("builtin")
    """A calibration file (``otel-agent-eval calibrate``) for the engine; ``builtin`` (the default): the
    shipped one; ``none`` or ``None``: the detectors' own confidences and the noisy-or score."""
    max_agent_labels: int = DEFAULT_MAX_AGENTS
    """At most this many distinct ``agent`` label values in the metrics; later names count as ``other``."""
    agent_labels: tuple[str, ...] = ()
    """When given, the only agent names kept as ``agent`` label values (the rest: ``other``)."""
    drain_seconds: float = 10.0
    export_max_bytes: int = DEFAULT_MAX_BYTES
    """Bytes of one export to the downstream at most (a request larger than that is sent alone): below gRPC's
    default 4 MiB receive limit."""
    export_max_requests: int = DEFAULT_MAX_REQUESTS
    """Outbox requests (one trace each) in one export at most."""
    export_min_backoff: float = 0.2
    export_max_backoff: float = 30.0
    """Seconds between retries of a transient refusal: capped exponential backoff with full jitter, from the
    minimum to the maximum (a Retry-After / RetryInfo delay is honoured up to the maximum)."""
    evaluate: bool = True
    metrics_otlp_endpoint: str | None = None


OTLP_GRPC_WORKERS = 8
"""gRPC worker threads for OTLP ``Export``; the evaluation service has ``service_max_concurrency`` more."""


def check_config(config: ServeConfig) -> tuple[bytes, bytes] | None:
    """Everything a setting can get wrong, before anything is opened or bound (:class:`StartupError` naming
    the flag or the file); the TLS certificate and key, read."""
    for flag, endpoint in (
        ("--grpc-endpoint", config.grpc_endpoint),
        ("--http-endpoint", config.http_endpoint),
        ("--metrics-endpoint", config.metrics_endpoint),
    ):
        if endpoint:
            check_endpoint(endpoint, flag)
    if config.downstream:
        check_downstream(config.downstream)
    for flag, value in (
        ("--service-max-concurrency", config.service_max_concurrency),
        ("--service-max-messages", config.service_max_messages),
        ("--service-max-request-bytes", config.service_max_request_bytes),
        ("--export-max-bytes", config.export_max_bytes),
        ("--export-max-requests", config.export_max_requests),
    ):
        if value < 1:
            raise StartupError(f"{flag} {value}: must be at least 1")
    if not 0 < config.export_min_backoff <= config.export_max_backoff:
        raise StartupError(
            f"--export-min-backoff {config.export_min_backoff}, --export-max-backoff {config.export_max_backoff}: "
            "the minimum must be over 0 and at most the maximum"
        )
    return load_tls(config.tls_cert, config.tls_key)


def _http_receiver(what: str, endpoint: str, flag: str, *args: Any, **kwargs: Any) -> HttpReceiver:
    host, port = check_endpoint(endpoint, flag)
    try:
        return HttpReceiver(host, port, *args, **kwargs)
    except OSError:
        raise listen_failure(what, host, port) from None


class Processor:
    def __init__(self, config: ServeConfig, engine: Engine | None = None) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        self.config = config
        self._ready = False
        tls = check_config(config)
        prepare_data_dir(config.data_dir)  # 0700, its files 0600
        self._lock = DataDirLock(config.data_dir)  # one processor per data directory
        self.store = Store(config.data_dir / "agent-eval.sqlite")
        self.registry = CollectorRegistry()  # one per processor: several can run in one process (tests)
        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry)]
        if config.metrics_otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter(endpoint=config.metrics_otlp_endpoint, insecure=True)
            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=15_000))
        self.metrics = ProcessorMetrics(
            readers,
            queue_depth=lambda: self.store.outbox_size() + self.store.inbox_size(),
            agent_labels=AgentLabels(max_agents=config.max_agent_labels, allow=config.agent_labels),
        )
        self.assembler = TraceAssembler(
            quiet_period=config.quiet_period,
            loop_quiet_period=config.loop_quiet_period,
            max_wait=config.max_wait,
            max_traces=config.max_traces,
            max_spans_per_trace=config.max_spans_per_trace,
            on_limit=lambda reason: self.metrics.released_early.add(1, {"reason": reason}),
        )
        if engine is None:
            from ..evaluate.calibration import load_calibration

            calibration = load_calibration(config.calibration) if config.calibration is not None else None
            packs = PackLibrary.with_builtins(config.policy_packs, force=config.pack)
            engine = Engine(packs=packs, calibration=calibration)
        self.engine = engine
        self.pipeline = Pipeline(
            self.store,
            self.engine,
            self.assembler,
            self.metrics,
            downstream=config.downstream is not None,
            evaluation_timeout=config.evaluation_timeout,
            workers=config.workers,
            evaluate=config.evaluate,
            notify=lambda: self.exporter.wake() if self.exporter is not None else None,
            max_spans_in_flight=config.max_spans_in_flight,
            early_interval=config.early_evaluation_interval,
        )
        self.exporter = (
            OutboxExporter(
                self.store,
                sender_for(config.downstream, headers=config.downstream_headers),
                self.metrics,
                downstream=config.downstream,
                max_requests=config.export_max_requests,
                max_bytes=config.export_max_bytes,
                min_backoff=config.export_min_backoff,
                max_backoff=config.export_max_backoff,
            )
            if config.downstream
            else None
        )
        self.grpc = (
            GrpcReceiver(
                config.grpc_endpoint,
                self.pipeline.receive,
                max_bytes=config.max_payload_bytes,
                bearer_token=config.bearer_token,
                tls=tls,
                workers=OTLP_GRPC_WORKERS + config.service_max_concurrency,
            )
            if config.grpc_endpoint
            else None
        )
        if self.grpc is not None:
            # The in-loop evaluation service (otel_agent_eval.v1.EvaluationService) on the same port, judging
            # with the same engine and policy packs as the processor.
            # Its calls are bounded (service_max_concurrency, on threads of their own), and the bearer token
            # guards them as it guards Export.
            from ..hook import Guard
            from ..hook.service import ServiceLimits, add_evaluation_service

            limits = ServiceLimits(
                max_concurrency=config.service_max_concurrency,
                max_messages=config.service_max_messages,
                max_request_bytes=config.service_max_request_bytes,
            )
            add_evaluation_service(self.grpc.server, Guard(engine=self.engine), limits)
        self.http = None
        if config.http_endpoint:
            https = None
            if tls is not None and config.tls_cert is not None and config.tls_key is not None:
                https = tls_context(config.tls_cert, config.tls_key)  # the gRPC receiver's certificate: HTTPS only
            self.http = _http_receiver(
                "OTLP/HTTP",
                config.http_endpoint,
                "--http-endpoint",
                self.pipeline.receive,
                max_bytes=config.max_payload_bytes,
                read_timeout=config.http_read_timeout,
                bearer_token=config.bearer_token,
                ssl_context=https,
            )
        self.admin = None
        if config.metrics_endpoint:  # /metrics, /healthz, /readyz: open (no token), plaintext, take no data
            self.admin = _http_receiver(
                "metrics",
                config.metrics_endpoint,
                "--metrics-endpoint",
                None,
                metrics=lambda: (generate_latest(self.registry), CONTENT_TYPE_LATEST),
                ready=self.ready,
                read_timeout=config.http_read_timeout,
            )

    def ready(self) -> bool:
        """``/readyz``: started, and the pipeline and exporter threads alive (a thread that died would leave
        requests acknowledged into the inbox and never handed on)."""
        threads = [self.pipeline.thread, self.exporter.thread if self.exporter is not None else None]
        return self._ready and all(t is None or t.is_alive() for t in threads)

    def start(self) -> None:
        recovered = self.pipeline.recover()
        self.pipeline.start()
        if self.exporter is not None:
            self.exporter.start()
        for part in (self.grpc, self.http, self.admin):
            if part is not None:
                part.start()
        self._ready = True
        logger.info(
            "serving: OTLP/gRPC %s, OTLP/HTTP %s, metrics %s; %s; %d spans recovered",
            self.grpc.endpoint if self.grpc else "off",
            f"port {self.http.port}" if self.http else "off",
            f"port {self.admin.port}" if self.admin else "off",
            f"downstream {self.config.downstream}" if self.config.downstream else f"store {self.store.path}",
            recovered,
        )

    def stop(self) -> None:
        """Stop receiving, evaluate what is buffered, try to deliver the outbox; what remains stays on disk."""
        self._ready = False
        if self.grpc is not None:
            self.grpc.stop()
        if self.http is not None:
            self.http.stop()
        self.pipeline.stop()
        if self.exporter is not None:
            self.exporter.stop(self.config.drain_seconds)
        if self.admin is not None:
            self.admin.stop()
        self.metrics.shutdown()
        self.store.close()
        self._lock.release()
