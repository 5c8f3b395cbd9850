"""Evaluation results written onto the spans they are about.

* On each span where a failure is located: ``agent_eval.failure.mode``, ``.category``, ``.outcome``,
  ``.critique`` and ``.evidence_kind`` (``structural``, ``textual`` or ``judge``) of its most severe failure
  (terminal before recovered, then the most confident), and one ``gen_ai.evaluation.result`` event per
  failure (``gen_ai.evaluation.name`` = the mode, ``gen_ai.evaluation.score.label`` = ``fail``,
  ``gen_ai.evaluation.score.value`` = the confidence, ``gen_ai.evaluation.explanation`` = the critique,
  with the finding's category, outcome, step, evaluator and evidence kind). Only deciding findings are
  written: suspicions are counted on the root span.
* On the run's root span: ``agent_eval.trace.outcome``, ``.failure_score``, ``.failures``,
  ``.terminal_failures``, ``.suspicions``.
* On each of those spans, ``agent_eval.agent.name``: the run's agent (when it has a name), so that a trace
  store that matches a search's tags on one span (Jaeger) finds a mode's failures of one agent; and, written
  by the processor, ``agent_eval.agent.label``: the agent as its metrics name it (``other``, ``redacted``,
  ``unknown`` included), what a dashboard's links search by.
* A failure with no span of its own (the run ended without an action) goes on the root span.
* When evaluation itself failed, the spans go on unlabelled, with ``agent_eval.evaluation.error`` on them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .. import semconv as sc
from ..evaluate.findings import Evaluation, Finding
from ..ingest.span_record import key_value


def set_attributes(span: Span, attributes: dict[str, Any]) -> None:
    """Set attributes on a protobuf span, replacing any of the same key."""
    keep = [kv for kv in span.attributes if kv.key not in attributes]
    del span.attributes[:]
    span.attributes.extend(keep)
    span.attributes.extend(key_value(k, v) for k, v in attributes.items())


def event_attributes(finding: Finding) -> list[KeyValue]:
    """The attributes of a finding's ``gen_ai.evaluation.result`` event."""
    return [
        key_value(sc.GEN_AI_EVALUATION_NAME, finding.mode),
        key_value(sc.GEN_AI_EVALUATION_SCORE_LABEL, "fail"),
        key_value(sc.GEN_AI_EVALUATION_SCORE_VALUE, float(finding.confidence)),
        key_value(sc.GEN_AI_EVALUATION_EXPLANATION, finding.critique),
        key_value(sc.AGENT_EVAL_FAILURE_CATEGORY, finding.category),
        key_value(sc.AGENT_EVAL_FAILURE_OUTCOME, finding.outcome),
        key_value(sc.AGENT_EVAL_STEP_INDEX, finding.step),
        key_value(sc.AGENT_EVAL_FAILURE_EVALUATOR, finding.evaluator),
        key_value(sc.AGENT_EVAL_FAILURE_EVIDENCE_KIND, finding.evidence_kind),
    ]


def _severity(finding: Finding) -> tuple[bool, float]:
    return (finding.outcome == "terminal", finding.confidence)


def label_spans(spans_by_id: dict[str, Span], evaluation: Evaluation, agent_label: str | None = None) -> int:
    """Write one run's evaluation onto its spans (found by hex span id); returns how many spans were labelled.
    ``agent_label``: the run's agent as the metrics name it, written beside its name."""
    run = evaluation.run
    root = spans_by_id.get(run.root_span_id or "")
    now = time.time_ns()
    located: dict[str, list[Finding]] = {}
    for finding in evaluation.failures:
        if not finding.counts:
            continue
        target = finding.span_id if finding.span_id in spans_by_id else run.root_span_id
        if target is not None and target in spans_by_id:
            located.setdefault(target, []).append(finding)
    agent: dict[str, Any] = {sc.AGENT_EVAL_AGENT_NAME: run.agent_name} if run.agent_name else {}
    if agent_label is not None:
        agent[sc.AGENT_EVAL_AGENT_LABEL] = agent_label
    for span_id, findings in located.items():
        span = spans_by_id[span_id]
        worst = max(findings, key=_severity)
        set_attributes(
            span,
            {
                sc.AGENT_EVAL_FAILURE_MODE: worst.mode,
                sc.AGENT_EVAL_FAILURE_CATEGORY: worst.category,
                sc.AGENT_EVAL_FAILURE_OUTCOME: worst.outcome,
                sc.AGENT_EVAL_FAILURE_CRITIQUE: worst.critique,
                sc.AGENT_EVAL_FAILURE_EVIDENCE_KIND: worst.evidence_kind,
                **agent,
            },
        )
        for finding in findings:
            span.events.add(
                time_unix_nano=now, name=sc.EVENT_GEN_AI_EVALUATION_RESULT, attributes=event_attributes(finding)
            )
    if root is not None:
        failures = [f for f in evaluation.failures if f.counts]
        set_attributes(
            root,
            {
                sc.AGENT_EVAL_TRACE_OUTCOME: evaluation.outcome,
                sc.AGENT_EVAL_TRACE_FAILURE_SCORE: float(evaluation.failure_score),
                sc.AGENT_EVAL_TRACE_FAILURES: len(failures),
                sc.AGENT_EVAL_TRACE_TERMINAL_FAILURES: sum(f.outcome == "terminal" for f in failures),
                sc.AGENT_EVAL_TRACE_SUSPICIONS: len(evaluation.suspicions),
                **agent,
            },
        )
    return len(located) + (root is not None)


def mark_unevaluated(spans: Sequence[Span], error: BaseException) -> None:
    """Spans whose evaluation failed go on as they came, saying so."""
    for span in spans:
        set_attributes(span, {sc.AGENT_EVAL_EVALUATION_ERROR: type(error).__name__})
