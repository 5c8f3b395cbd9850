"""``otel-agent-eval serve``: the processor, assembled from its parts, started and stopped as one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..evaluate import Engine
from .agent_labels import AgentLabels
from .assembly import AssemblyConfig, TraceAssembler
from .export import ExporterConfig, OutboxExporter, display, sender_for
from .http_wire import tls_context
from .judging import JudgeConfig, cascade_for
from .metrics import ProcessorMetrics, TelemetryConfig
from .pipeline import Pipeline, QueueConfig
from .receivers import GrpcReceiver, HttpReceiver, ReceiversConfig
from .security import (
    DataDirLock,
    StartupError,
    check_endpoint,
    listen_failure,
    load_tls,
    prepare_data_dir,
)
from .settings import Component, as_yaml_value
from .settings import Field as SettingField
from .store import Store
from .workers import EvaluationConfig, engine_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """The whole processor's configuration: one typed section per component, each with its defaults and its
    ``validate()``. ``serve``'s flags, its ``AGENT_EVAL_*`` environment variables and its ``--config`` file are
    made from these declarations; in code, :meth:`of` takes the settings by name:

    >>> config = ServeConfig.of(quiet_period=0.5, downstream="grpc://collector:4317")
    >>> config.assembly.quiet_period, config.exporter.downstream, config.receivers.grpc_endpoint
    (0.5, 'grpc://collector:4317', '127.0.0.1:4317')
    """

    receivers: ReceiversConfig = field(default_factory=ReceiversConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    exporter: ExporterConfig = field(default_factory=ExporterConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    COMPONENTS: ClassVar[tuple[type[Component], ...]] = (
        ReceiversConfig,
        QueueConfig,
        AssemblyConfig,
        EvaluationConfig,
        ExporterConfig,
        TelemetryConfig,
        JudgeConfig,
    )

    @classmethod
    def settings(cls) -> list[SettingField]:
        """Every setting of every component, in the order of the components."""
        return [f for component in cls.COMPONENTS for f in component.fields()]

    @classmethod
    def of(cls, **settings: Any) -> ServeConfig:
        """A configuration from settings by name (each name is unique across the components); the rest keep
        their defaults. An unknown name is a :class:`TypeError`, as for any keyword argument."""
        by_section: dict[str, dict[str, Any]] = {c.section: {} for c in cls.COMPONENTS}
        known = {f.name: f.section for f in cls.settings()}
        for name, value in settings.items():
            if name not in known:
                raise TypeError(f"ServeConfig.of() got an unexpected setting {name!r}")
            by_section[known[name]][name] = value
        return cls(**{c.section: c(**by_section[c.section]) for c in cls.COMPONENTS})  # type: ignore[arg-type]

    def validate(self) -> None:
        """Every component's ranges and rules (:class:`StartupError` naming the setting and its flag)."""
        for component in self.components():
            component.validate()

    def components(self) -> list[Component]:
        return [getattr(self, c.section) for c in self.COMPONENTS]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """As a ``--config`` file holds it, a section per component; secrets shown only as set or not."""
        out: dict[str, dict[str, Any]] = {}
        for component in self.components():
            section = out.setdefault(component.section, {})
            for f in component.fields():
                value = getattr(component, f.name)
                if f.spec.secret:
                    section[f.name] = _masked(value)
                elif f.name == "downstream" and value:
                    section[f.name] = display(value)  # a user and password in the URL are a secret too
                else:
                    section[f.name] = as_yaml_value(value)
        return out


def _masked(value: Any) -> Any:
    """A secret as ``--print-config`` shows it: whether it is set (a header: its name), never its value."""
    if isinstance(value, dict):
        return {name: "<redacted>" for name in value}
    return "<redacted>" if value else None


OTLP_GRPC_WORKERS = 8
"""gRPC worker threads for OTLP ``Export``; the evaluation service has ``service_max_concurrency`` more."""


def check_config(config: ServeConfig) -> tuple[bytes, bytes] | None:
    """Everything a setting can get wrong, before anything is opened or bound (:class:`StartupError` naming
    the setting, its flag or the file); the TLS certificate and key, read."""
    config.validate()
    if config.judge.judge != "off" and config.evaluation.processes:
        # Worker processes send back evaluations without the runs' steps, which the judge reads.
        raise StartupError("judge.judge (--judge): not with --processes N yet; evaluate on threads to judge")
    return load_tls(config.receivers.tls_cert, config.receivers.tls_key)


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
        if engine is not None and config.evaluation.processes:  # before anything is opened
            raise ValueError("an engine given in code evaluates in this process: processes must be 0 with it")
        tls = check_config(config)
        prepare_data_dir(config.queue.data_dir)  # 0700, its files 0600
        self._lock = DataDirLock(config.queue.data_dir)  # one processor per data directory
        self.store = Store(
            config.queue.data_dir / "agent-eval.sqlite",
            max_traces=config.queue.max_stored_traces,
            fsync=config.queue.fsync,
        )
        self.registry = CollectorRegistry()  # one per processor: several can run in one process (tests)
        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry)]
        if config.telemetry.metrics_otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter(endpoint=config.telemetry.metrics_otlp_endpoint, insecure=True)
            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=15_000))
        self.metrics = ProcessorMetrics(
            readers,
            queue_depth=lambda: self.store.outbox_size() + self.store.inbox_size(),
            agent_labels=AgentLabels(max_agents=config.telemetry.max_agent_labels, allow=config.telemetry.agent_labels),
        )
        self.assembler = TraceAssembler(
            quiet_period=config.assembly.quiet_period,
            loop_quiet_period=config.assembly.loop_quiet_period,
            max_wait=config.assembly.max_wait,
            max_traces=config.assembly.max_traces,
            max_spans_per_trace=config.assembly.max_spans_per_trace,
            on_limit=lambda reason: self.metrics.released_early.add(1, {"reason": reason}),
        )
        if engine is None:
            engine = engine_for(config.evaluation)
        self.engine = engine
        self.pipeline = Pipeline(
            self.store,
            self.engine,
            self.assembler,
            self.metrics,
            downstream=config.exporter.downstream is not None,
            evaluation_timeout=config.evaluation.evaluation_timeout,
            workers=config.evaluation.workers,
            processes=config.evaluation.processes,
            evaluation_config=config.evaluation,
            evaluate=config.evaluation.evaluate,
            notify=lambda: self.exporter.wake() if self.exporter is not None else None,
            offer=lambda handoff: self.exporter.offer(handoff) if self.exporter is not None else False,
            max_spans_in_flight=config.queue.max_spans_in_flight,
            early_interval=config.evaluation.early_evaluation_interval,
            cascade=cascade_for(config.judge, self.engine, on_event=self.metrics.judge_event),
            judge_concurrency=config.judge.judge_concurrency,
        )
        self.exporter = (
            OutboxExporter(
                self.store,
                sender_for(config.exporter.downstream, headers=config.exporter.downstream_headers),
                self.metrics,
                downstream=config.exporter.downstream,
                max_requests=config.exporter.export_max_requests,
                max_bytes=config.exporter.export_max_bytes,
                min_backoff=config.exporter.export_min_backoff,
                max_backoff=config.exporter.export_max_backoff,
            )
            if config.exporter.downstream
            else None
        )
        self.grpc = (
            GrpcReceiver(
                config.receivers.grpc_endpoint,
                self.pipeline.receive,
                max_bytes=config.receivers.max_payload_bytes,
                bearer_token=config.receivers.bearer_token,
                tls=tls,
                workers=OTLP_GRPC_WORKERS + config.receivers.service_max_concurrency,
            )
            if config.receivers.grpc_endpoint
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
                max_concurrency=config.receivers.service_max_concurrency,
                max_messages=config.receivers.service_max_messages,
                max_request_bytes=config.receivers.service_max_request_bytes,
            )
            add_evaluation_service(self.grpc.server, Guard(engine=self.engine), limits)
        self.http = None
        if config.receivers.http_endpoint:
            https = None
            if tls is not None and config.receivers.tls_cert is not None and config.receivers.tls_key is not None:
                https = tls_context(
                    config.receivers.tls_cert, config.receivers.tls_key
                )  # the gRPC receiver's certificate: HTTPS only
            self.http = _http_receiver(
                "OTLP/HTTP",
                config.receivers.http_endpoint,
                "--http-endpoint",
                self.pipeline.receive,
                max_bytes=config.receivers.max_payload_bytes,
                read_timeout=config.receivers.http_read_timeout,
                bearer_token=config.receivers.bearer_token,
                ssl_context=https,
            )
        self.admin = None
        if config.telemetry.metrics_endpoint:  # /metrics, /healthz, /readyz: open (no token), plaintext, take no data
            self.admin = _http_receiver(
                "metrics",
                config.telemetry.metrics_endpoint,
                "--metrics-endpoint",
                None,
                metrics=lambda: (generate_latest(self.registry), CONTENT_TYPE_LATEST),
                ready=self.ready,
                read_timeout=config.receivers.http_read_timeout,
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
            f"downstream {display(self.config.exporter.downstream)}"
            if self.config.exporter.downstream
            else f"store {self.store.path}",
            recovered,
        )

    def stop(self) -> None:
        """Stop receiving, evaluate what is buffered, try to deliver the outbox; what remains stays on disk."""
        self._ready = False
        if self.grpc is not None:
            self.grpc.stop()
        if self.http is not None:
            self.http.stop()
        try:
            self.pipeline.stop()
            if self.exporter is not None:
                self.exporter.stop(self.config.exporter.drain_seconds)
        finally:  # whatever failed above is still on disk (the inbox, the outbox): the rest is closed all the same
            if self.admin is not None:
                self.admin.stop()
            self.metrics.shutdown()
            self.store.close()
            self._lock.release()
