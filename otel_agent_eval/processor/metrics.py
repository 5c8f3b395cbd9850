"""The processor's own metrics, through the OpenTelemetry metrics SDK, read by Prometheus (and optionally OTLP).

Every metric is declared once, in :data:`METRICS` (name, instrument, unit, labels, help): the instruments are
made from it, and the table in docs/processor.md and the alert rules' tests are checked against it. Prometheus
names follow from the declaration as the SDK's exporter makes them (``.`` to ``_``, the unit, ``_total`` on
counters):

>>> METRICS["agent_eval.traces"].prometheus, METRICS["agent_eval.evaluation.duration"].prometheus
('agent_eval_traces_total', 'agent_eval_evaluation_duration_seconds')

Labels stay low-cardinality: an agent's name (through
:class:`~otel_agent_eval.processor.agent_labels.AgentLabels`: at most ``--max-agent-labels`` names, or an
allow-list, then ``other``; ``redacted`` for anything that looks like an e-mail or an identifier), a failure
mode, an outcome; never a trace id, a user or message text.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource

from .. import __version__
from ..evaluate.findings import Evaluation
from ..evaluate.judge import JudgeEvent
from ..evaluate.judge.client import FailureReason
from ..evaluate.judge.prompts import FAMILIES
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


@dataclass(frozen=True)
class Metric:
    """One of the processor's metrics, as declared."""

    name: str
    """The OpenTelemetry instrument's name."""
    instrument: Literal["counter", "histogram", "gauge"]
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""

    @property
    def prometheus(self) -> str:
        """The name Prometheus scrapes."""
        name = self.name.replace(".", "_") + {"s": "_seconds", "": ""}[self.unit]
        return name + "_total" if self.instrument == "counter" else name


SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)
"""Histogram boundaries of durations in seconds: the semantic conventions' advice (the SDK's default ones,
0 to 10,000, are meant for milliseconds: every evaluation would fall in the first bucket, and a quantile read
from the buckets would say 2.5 s for any), with 30 and 60 s for a judge's calls."""

JUDGE_REASONS = ("all", "suspicious", "sampled")
"""Why the cascade sent a run to the judge (``agent_eval_judge_runs_total{reason}``)."""
JUDGE_FAILURES = (*typing.get_args(FailureReason), "bad_answer")
"""Why a judge call gave no usable answer (``agent_eval_judge_errors_total{reason}``)."""

RELEASE_REASONS = ("span_limit", "trace_limit", "max_wait", "shutdown")
"""Why a trace was evaluated before it was complete (``agent_eval_traces_released_early_total{reason}``)."""

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("agent_eval.traces", "counter", "Evaluated agent runs, by outcome.", ("outcome", "agent")),
        Metric(
            "agent_eval.failures",
            "counter",
            "Failures found (deciding findings), by mode, category and outcome.",
            ("mode", "category", "outcome", "agent"),
        ),
        Metric("agent_eval.evaluation.duration", "histogram", "Time to evaluate one trace.", unit="s"),
        Metric("agent_eval.queue.depth", "gauge", "Requests waiting on disk: the inbox and the outbox."),
        Metric("agent_eval.spans.received", "counter", "Spans received (acknowledged to the sender)."),
        Metric("agent_eval.spans.exported", "counter", "Spans handed on (downstream or the embedded store)."),
        Metric("agent_eval.export.failures", "counter", "Failed attempts to deliver to the downstream."),
        Metric("agent_eval.evaluation.errors", "counter", "Traces forwarded unevaluated because evaluation failed."),
        Metric(
            "agent_eval.traces.released_early",
            "counter",
            "Traces evaluated before complete: at a limit (span_limit, trace_limit, max_wait) or at shutdown.",
            ("reason",),
        ),
        Metric(
            "agent_eval.spans.refused", "counter", "Spans refused (retryable) because too many wait for evaluation."
        ),
        Metric(
            "agent_eval.early_failures",
            "counter",
            "Failures found in traces still open (long conversations), each once, as they happen.",
            ("mode", "category", "agent"),
        ),
        Metric(
            "agent_eval.guard.recoveries",
            "counter",
            "Recovered failures at steps the in-loop guard sent back: failures the hook turned around.",
            ("mode", "agent"),
        ),
        Metric(
            "agent_eval.judge.runs",
            "counter",
            "Runs the cascade sent to the judge, by why: all, suspicious (score in the band), sampled.",
            ("reason",),
        ),
        Metric(
            "agent_eval.judge.calls",
            "counter",
            "Calls to the judge's endpoint that answered, by mode family.",
            ("family",),
        ),
        Metric(
            "agent_eval.judge.tokens",
            "counter",
            "Tokens of the judge's calls, by kind (prompt, completion).",
            ("kind",),
        ),
        Metric("agent_eval.judge.duration", "histogram", "Time of one judge call that answered.", unit="s"),
        Metric(
            "agent_eval.judge.errors",
            "counter",
            "Judge calls with no usable answer, by reason (timeout, connection, rate_limited, server_error, refused, "
            "bad_response, bad_answer): the detectors' verdict stands.",
            ("reason",),
        ),
        Metric("agent_eval.judge.cache_hits", "counter", "Judge questions answered from the cache (no call)."),
        Metric(
            "agent_eval.judge.budget_refusals",
            "counter",
            "Runs not judged because the budget of calls or tokens per minute was spent.",
        ),
        Metric(
            "agent_eval.deadletters",
            "counter",
            "Requests the downstream refused for good, moved to the dead letters, by status code (reason).",
            ("reason",),
        ),
    )
}


def markdown_table() -> str:
    """The metrics as a Markdown table (docs/processor.md holds it; a test keeps it current)."""
    rows = ["| metric | type | labels | what it counts |", "|---|---|---|---|"]
    for m in METRICS.values():
        labels = ", ".join(f"`{label}`" for label in m.labels)
        rows.append(f"| `{m.prometheus}` | {m.instrument} | {labels} | {m.help} |")
    return "\n".join(rows) + "\n"


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

        def counter(name: str) -> Any:
            m = METRICS[name]
            made = meter.create_counter(m.name, unit=m.unit, description=m.help)
            if not m.labels:
                # At 0 from the start: Prometheus' rate() and increase() cannot see the first event of a series
                # whose first sample already holds it (an alert on export failures would miss the first).
                made.add(0)
            return made

        def histogram(name: str) -> Any:  # durations, in seconds
            m = METRICS[name]
            return meter.create_histogram(
                m.name, unit=m.unit, description=m.help, explicit_bucket_boundaries_advisory=SECONDS_BUCKETS
            )

        self.traces = counter("agent_eval.traces")
        self.failures = counter("agent_eval.failures")
        self.duration = histogram("agent_eval.evaluation.duration")
        self.spans_received = counter("agent_eval.spans.received")
        self.spans_exported = counter("agent_eval.spans.exported")
        self.export_failures = counter("agent_eval.export.failures")
        self.deadletters = counter("agent_eval.deadletters")
        self.released_early = counter("agent_eval.traces.released_early")
        for reason in RELEASE_REASONS:
            self.released_early.add(0, {"reason": reason})
        self.early_failures = counter("agent_eval.early_failures")
        self.guard_recoveries = counter("agent_eval.guard.recoveries")
        self.refused = counter("agent_eval.spans.refused")
        self.evaluation_errors = counter("agent_eval.evaluation.errors")
        self.judge_runs = counter("agent_eval.judge.runs")
        self.judge_calls = counter("agent_eval.judge.calls")
        self.judge_tokens = counter("agent_eval.judge.tokens")
        self.judge_duration = histogram("agent_eval.judge.duration")
        self.judge_errors = counter("agent_eval.judge.errors")
        # At 0 from the start, each label value, as the other counters (an alert on judge errors sees the first).
        for reason in JUDGE_REASONS:
            self.judge_runs.add(0, {"reason": reason})
        for family in FAMILIES:
            self.judge_calls.add(0, {"family": family})
        for kind in ("prompt", "completion"):
            self.judge_tokens.add(0, {"kind": kind})
        for failure in JUDGE_FAILURES:
            self.judge_errors.add(0, {"reason": failure})
        self.judge_cache_hits = counter("agent_eval.judge.cache_hits")
        self.judge_budget_refusals = counter("agent_eval.judge.budget_refusals")
        self._queue_depth = queue_depth
        self._agents: set[str] = set()
        depth = METRICS["agent_eval.queue.depth"]
        meter.create_observable_gauge(depth.name, callbacks=[self._observe_queue], description=depth.help)

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
                self.early_failures.add(0, {"mode": mode.mode, "category": mode.category, "agent": agent})
                self.guard_recoveries.add(0, {"mode": mode.mode, "agent": agent})

    def agent(self, name: str | None) -> str:
        """The ``agent`` label value for an agent's name (its series made, at 0, the first time)."""
        agent = self.agent_labels.of(name)
        self._first_sight(agent)
        return agent

    def record(self, evaluation: Evaluation, seconds: float) -> None:
        agent = self.agent(evaluation.run.agent_name)
        self.traces.add(1, {"outcome": evaluation.outcome, "agent": agent})
        for finding in evaluation.failures:
            if finding.counts:
                self.failures.add(
                    1, {"mode": finding.mode, "category": finding.category, "outcome": finding.outcome, "agent": agent}
                )
        self.duration.record(seconds)

    def judge_event(self, event: JudgeEvent) -> None:
        """What the judge did (:class:`~otel_agent_eval.evaluate.judge.JudgeEvent`), counted."""
        if event.kind == "call":
            self.judge_calls.add(1, {"family": event.family})
            self.judge_tokens.add(event.prompt_tokens, {"kind": "prompt"})
            self.judge_tokens.add(event.completion_tokens, {"kind": "completion"})
            self.judge_duration.record(event.seconds)
        elif event.kind == "error":
            self.judge_errors.add(1, {"reason": event.reason})
        elif event.kind == "cache_hit":
            self.judge_cache_hits.add(1)
        elif event.kind == "budget_refused":
            self.judge_budget_refusals.add(1)

    def shutdown(self) -> None:
        self.provider.shutdown()
