"""The processor's own metrics, through the OpenTelemetry metrics SDK, read by Prometheus (and optionally OTLP).

Prometheus names (the SDK's Prometheus exporter adds ``_total`` to counters and the unit to histograms):
``agent_eval_traces_total{outcome,agent}``, ``agent_eval_failures_total{mode,category,outcome,agent}``,
``agent_eval_evaluation_duration_seconds``, ``agent_eval_queue_depth``, ``agent_eval_export_failures_total``,
``agent_eval_spans_received_total``, ``agent_eval_spans_exported_total``, ``agent_eval_traces_released_early_total
{reason}``, ``agent_eval_evaluation_errors_total``. Labels stay low-cardinality: an agent's name (through
:class:`~otel_agent_eval.processor.agent_labels.AgentLabels`: at most ``--max-agent-labels`` names, or an
allow-list, then ``other``; ``redacted`` for anything that looks like an e-mail or an identifier), a failure
mode, an outcome; never a trace id, a user or message text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource

from .. import __version__
from ..evaluate.findings import Evaluation
from ..evaluate.taxonomy import TAXONOMY
from .agent_labels import DEFAULT_MAX_AGENTS, AgentLabels
from .security import check_endpoint
from .settings import Component, setting


@dataclass(frozen=True)
class TelemetryConfig(Component):
    """The processor's own telemetry: where its metrics are served or pushed, and the bound on agent labels."""

    section = "telemetry"
    metrics_endpoint: str | None = setting(
        "127.0.0.1:9464", "Address of /metrics (Prometheus), /healthz and /readyz ('' to turn off)."
    )
    metrics_otlp_endpoint: str | None = setting(
        None, "Also push the processor's metrics over OTLP/gRPC to HOST:PORT (every 15 s)."
    )
    max_agent_labels: int = setting(
        DEFAULT_MAX_AGENTS,
        "At most this many agent names as the metrics' agent label; later ones count as 'other'.",
        minimum=0,
    )
    agent_labels: tuple[str, ...] = setting(
        (),
        "An agent name to keep as a metric label (repeatable); when given, every other name is 'other'.",
        flag="agent-label",
    )

    def validate(self) -> None:
        super().validate()
        if self.metrics_endpoint:
            check_endpoint(self.metrics_endpoint, "--metrics-endpoint")


class ProcessorMetrics:
    def __init__(
        self,
        readers: Iterable[MetricReader] = (),
        queue_depth: Callable[[], int] = lambda: 0,
        *,
        agent_labels: AgentLabels | None = None,
    ) -> None:
        self.agent_labels = agent_labels or AgentLabels()
        """How an agent's name becomes the ``agent`` label: bounded, never personal data (see
        :mod:`otel_agent_eval.processor.agent_labels`)."""
        self.provider = MeterProvider(
            metric_readers=list(readers), resource=Resource.create({"service.name": "otel-agent-eval"})
        )
        meter = self.provider.get_meter("otel_agent_eval.processor", __version__)
        self.traces = meter.create_counter("agent_eval.traces", description="Evaluated agent runs, by outcome.")
        self.failures = meter.create_counter("agent_eval.failures", description="Failures found, by mode.")
        self.duration = meter.create_histogram(
            "agent_eval.evaluation.duration", unit="s", description="Time to evaluate one trace."
        )
        self.spans_received = meter.create_counter("agent_eval.spans.received", description="Spans received.")
        self.spans_exported = meter.create_counter("agent_eval.spans.exported", description="Spans handed on.")
        self.export_failures = meter.create_counter(
            "agent_eval.export.failures", description="Failed attempts to deliver to the downstream."
        )
        self.deadletters = meter.create_counter(
            "agent_eval.deadletters",
            description="Requests the downstream refused for good, moved to the dead letters, by status code (reason).",
        )
        self.released_early = meter.create_counter(
            "agent_eval.traces.released_early", description="Traces evaluated before complete, at a memory limit."
        )
        self.early_failures = meter.create_counter(
            "agent_eval.early_failures",
            description="Failures found in traces still open (long conversations), each once, as they happen.",
        )
        self.guard_recoveries = meter.create_counter(
            "agent_eval.guard.recoveries",
            description="Recovered failures at steps the in-loop guard sent back: failures the hook turned around.",
        )
        self.refused = meter.create_counter(
            "agent_eval.spans.refused", description="Spans refused (retryable) because too many wait for evaluation."
        )
        self.evaluation_errors = meter.create_counter(
            "agent_eval.evaluation.errors", description="Traces forwarded unevaluated because evaluation failed."
        )
        self._queue_depth = queue_depth
        self._agents: set[str] = set()
        meter.create_observable_gauge(
            "agent_eval.queue.depth", callbacks=[self._observe_queue], description="Requests waiting on disk."
        )

    def _observe_queue(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._queue_depth())

    def _first_sight(self, agent: str) -> None:
        """Every series of a new agent starts at 0, so that the first failures count as an increase:
        Prometheus' rate() sees nothing in a series whose first sample already holds them."""
        if agent in self._agents:
            return
        self._agents.add(agent)
        for outcome in ("success", "recovered", "terminal"):
            self.traces.add(0, {"outcome": outcome, "agent": agent})
        for mode in TAXONOMY:
            if mode.category != "evaluator":
                for outcome in ("terminal", "recovered"):
                    self.failures.add(
                        0, {"mode": mode.mode, "category": mode.category, "outcome": outcome, "agent": agent}
                    )

    def agent(self, name: str | None) -> str:
        """The ``agent`` label value for an agent's name."""
        return self.agent_labels.of(name)

    def record(self, evaluation: Evaluation, seconds: float) -> None:
        agent = self.agent(evaluation.run.agent_name)
        self._first_sight(agent)
        self.traces.add(1, {"outcome": evaluation.outcome, "agent": agent})
        for finding in evaluation.failures:
            if finding.counts:
                self.failures.add(
                    1, {"mode": finding.mode, "category": finding.category, "outcome": finding.outcome, "agent": agent}
                )
        self.duration.record(seconds)

    def shutdown(self) -> None:
        self.provider.shutdown()
