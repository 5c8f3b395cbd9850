"""The judge stage's configuration: whether and how an evaluation model joins the detectors (``--judge``).

Declared once, like every component: ``serve`` makes its flags, environment variables and ``judge:`` section
of the config file from it, and ``evaluate`` its flags and variables. The endpoint's API key is read from
``AGENT_EVAL_JUDGE_API_KEY`` only (a flag would show it in the process list), and never printed or logged.

>>> JudgeConfig().judge
'off'
>>> JudgeConfig(judge="all").validate()
Traceback (most recent call last):
...
otel_agent_eval.processor.security.StartupError: judge.judge 'all' (--judge): needs --judge-base-url and --judge-model
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from .. import semconv as sc
from ..evaluate import Engine
from ..evaluate.findings import Evaluation, Finding
from ..evaluate.judge import JUDGE_MODES, Cascade, CascadeConfig, ChatClient, JudgeEvent, LLMJudge
from ..evaluate.judge.client import check_base_url
from ..evaluate.judge.prompts import FAMILIES
from ..ingest.span_record import key_value
from .labelling import event_attributes
from .security import StartupError
from .settings import Component, setting

API_KEY_ENV = "AGENT_EVAL_JUDGE_API_KEY"


@dataclass(frozen=True)
class JudgeConfig(Component):
    """An evaluation model behind an OpenAI-compatible endpoint, after the detectors, within a budget."""

    section = "judge"
    judge: str = setting(
        "off",
        "Which runs an evaluation model judges after the detectors: off, suspicious (a calibrated failure score "
        "between --judge-band-low and --judge-band-high), sampled (--judge-sample-rate of runs, by trace id), "
        "all.",
    )
    judge_base_url: str | None = setting(
        None, "The judge's OpenAI-compatible endpoint (vLLM, Ollama, OpenAI...), e.g. http://localhost:8000/v1."
    )
    judge_model: str | None = setting(None, "The judge's model name, as the endpoint knows it.")
    judge_band_low: float = setting(0.2, "--judge suspicious: the lowest failure score judged.", minimum=0, maximum=1)
    judge_band_high: float = setting(0.8, "--judge suspicious: the highest failure score judged.", minimum=0, maximum=1)
    judge_sample_rate: float = setting(0.1, "--judge sampled: the share of runs judged.", minimum=0, maximum=1)
    judge_calls_per_minute: float = setting(
        60.0,
        "Judge calls a minute the budget allows (a run takes one per mode family, charged before it is judged; "
        "retries and a second ask are not charged).",
        minimum=0,
        min_open=True,
    )
    judge_tokens_per_minute: float = setting(
        200_000.0,
        "Judge tokens a minute the budget allows (prompt and answer, estimated before the run is judged).",
        minimum=0,
        min_open=True,
    )
    judge_timeout: float = setting(
        60.0, "Seconds the judge may take on one run, all its calls and retries included.", minimum=0, min_open=True
    )
    judge_concurrency: int = setting(4, "Judge calls in flight at most.", minimum=1)
    judge_max_prompt_tokens: int = setting(
        6000, "Tokens of a prompt at most (the run is cut to fit: longest tool results first).", minimum=500
    )

    def validate(self) -> None:
        super().validate()
        if self.judge not in JUDGE_MODES:
            raise StartupError(f"judge.judge {self.judge!r} (--judge): one of {', '.join(JUDGE_MODES)}")
        if self.judge != "off" and not (self.judge_base_url and self.judge_model):
            raise StartupError(f"judge.judge {self.judge!r} (--judge): needs --judge-base-url and --judge-model")
        if self.judge_base_url:
            try:
                check_base_url(self.judge_base_url)
            except ValueError as exc:
                raise StartupError(f"judge.judge_base_url (--judge-base-url): {exc}") from None
        if self.judge != "off" and self.judge_calls_per_minute < len(FAMILIES):
            raise StartupError(
                f"judge.judge_calls_per_minute {self.judge_calls_per_minute:g} (--judge-calls-per-minute): a run "
                f"takes {len(FAMILIES)} calls (one per mode family); below that no run is ever judged"
            )
        if self.judge_band_low > self.judge_band_high:
            raise StartupError(
                f"judge.judge_band_low {self.judge_band_low} (--judge-band-low): above --judge-band-high"
            )


def cascade_for(
    config: JudgeConfig, engine: Engine, on_event: Callable[[JudgeEvent], None] = lambda event: None
) -> Cascade | None:
    """The cascade these settings describe (``None`` with ``--judge off``); the key from the environment."""
    config.validate()
    if config.judge == "off":
        return None
    assert config.judge_base_url is not None and config.judge_model is not None
    try:
        client = ChatClient(
            config.judge_base_url,
            config.judge_model,
            api_key=os.environ.get(API_KEY_ENV) or None,
            timeout=min(30.0, config.judge_timeout),
        )
    except ValueError as exc:  # the key or the URL; the message never holds the key
        raise StartupError(f"judge: {exc} ({API_KEY_ENV}, --judge-base-url)") from None
    judge = LLMJudge(
        client,
        budget_tokens=config.judge_max_prompt_tokens,
        concurrency=config.judge_concurrency,
        run_timeout=config.judge_timeout,
        on_event=on_event,
    )
    cascade_config = CascadeConfig(
        mode=config.judge,  # type: ignore[arg-type]  # checked by validate()
        band=(config.judge_band_low, config.judge_band_high),
        sample_rate=config.judge_sample_rate,
        calls_per_minute=config.judge_calls_per_minute,
        tokens_per_minute=config.judge_tokens_per_minute,
    )
    return Cascade(engine, judge, cascade_config, on_event=on_event)


JUDGE_SCOPE = "otel_agent_eval.judge"


def judged_findings(before: Evaluation, after: Evaluation) -> list[Finding]:
    """The findings the judge added to the detectors' (its own errors included)."""
    return [f for f in after.findings if f not in before.findings]


def follow_up_request(
    before: Evaluation,
    after: Evaluation,
    *,
    judge: str,
    started_ns: int,
    ended_ns: int,
    agent_label: str,
    span_id: bytes | None = None,
) -> ExportTraceServiceRequest | None:
    """The judge's findings on a run as one more span of its trace: an ``evaluation`` span under the run's root,
    linked to the spans it judged, with one ``gen_ai.evaluation.result`` event per finding (the same event the
    detectors' labels carry) and the run's verdict with them. ``None`` when the judge added nothing.

    Why a span, not attributes on the judged spans: those were handed on with the detectors' labels before the
    judge answered (a trace store does not take changes to a span it holds). The GenAI conventions' evaluation
    event SHOULD be parented to the span it evaluates, which this span's links name instead; the open proposal
    for evaluation spans names the operation ``evaluation``, as here.
    """
    added = judged_findings(before, after)
    run = after.run
    if not added or run.trace_id is None or len(run.trace_id) != 32:
        return None
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(key_value(sc.SERVICE_NAME, "otel-agent-eval"))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = JUDGE_SCOPE
    span = scope_spans.spans.add(
        trace_id=bytes.fromhex(run.trace_id),
        span_id=span_id or os.urandom(8),
        name=f"{sc.OP_EVALUATION} {judge}",
        kind=ProtoSpan.SPAN_KIND_INTERNAL,
        start_time_unix_nano=started_ns,
        end_time_unix_nano=max(ended_ns, started_ns),
    )
    if run.root_span_id and len(run.root_span_id) == 16:
        span.parent_span_id = bytes.fromhex(run.root_span_id)
    deciding = [f for f in after.failures if f.counts]
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EVALUATION,
        sc.GEN_AI_EVALUATION_NAME: judge,
        sc.AGENT_EVAL_FAILURE_EVALUATOR: judge,
        sc.AGENT_EVAL_TRACE_OUTCOME: after.outcome,
        sc.AGENT_EVAL_TRACE_FAILURE_SCORE: after.failure_score,
        sc.AGENT_EVAL_TRACE_FAILURES: len(deciding),
        sc.AGENT_EVAL_AGENT_LABEL: agent_label,
    }
    if run.agent_name:
        attributes[sc.AGENT_EVAL_AGENT_NAME] = run.agent_name
    worst = max((f for f in added if f.counts), key=lambda f: (f.outcome == "terminal", f.confidence), default=None)
    if worst is not None:
        attributes.update(
            {
                sc.AGENT_EVAL_FAILURE_MODE: worst.mode,
                sc.AGENT_EVAL_FAILURE_CATEGORY: worst.category,
                sc.AGENT_EVAL_FAILURE_OUTCOME: worst.outcome,
                sc.AGENT_EVAL_FAILURE_CRITIQUE: worst.critique,
                sc.AGENT_EVAL_FAILURE_EVIDENCE_KIND: worst.evidence_kind,
            }
        )
    span.attributes.extend(key_value(k, v) for k, v in attributes.items())
    linked: set[str] = set()
    for finding in added:
        event = span.events.add(name=sc.EVENT_GEN_AI_EVALUATION_RESULT, time_unix_nano=max(ended_ns, started_ns))
        event.attributes.extend(event_attributes(finding))
        if finding.span_id and len(finding.span_id) == 16 and finding.span_id not in linked:
            linked.add(finding.span_id)
            link = span.links.add(trace_id=span.trace_id, span_id=bytes.fromhex(finding.span_id))
            link.attributes.append(key_value(sc.AGENT_EVAL_STEP_INDEX, finding.step))
    return request
