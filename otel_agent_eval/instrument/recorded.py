"""Recorded runs as spans, through the real OpenTelemetry SDK.

A recorded run (from a file, or built in code) is written with the same names and attributes as live
instrumentation, with the recorded timestamps where the source has them. Where it has none (τ-bench), the
steps are laid out 1 ms apart, ending at the time of the import.

>>> from otel_agent_eval.model import AgentRun, UserMessage, AssistantMessage
>>> writer = RunSpanWriter()
>>> run = AgentRun(steps=(UserMessage(index=1, content="hi"), AssistantMessage(index=2, content="hello")))
>>> spans = writer.spans(run)
>>> [(s.name, s.attributes["agent_eval.step.index"]) for s in spans[1:]]
[('user_message', 1), ('chat', 2)]
>>> spans[0].name
'invoke_agent'
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import __version__
from .. import semconv as sc
from ..model import AgentRun, AssistantMessage, Step, ToolExecution, UserMessage
from . import attributes as attrs
from .content import ContentPolicy
from .messages import dumps, step_message

STEP_SPACING_NS = 1_000_000


def _shift(value: int | None, by: int) -> int | None:
    return None if value is None else value + by


def ending_at(run: AgentRun, end_time_ns: int) -> AgentRun:
    """The run with every recorded timestamp moved by one offset, so that it ends at ``end_time_ns``.

    Every duration and every gap stays as recorded. A run with no recorded time is returned as it is (its
    steps are laid out ending at the time they are written anyway).

    >>> from otel_agent_eval.model import AgentRun, UserMessage
    >>> run = AgentRun(steps=(UserMessage(index=0, content="hi", start_time_ns=10, end_time_ns=15),), end_time_ns=20)
    >>> moved = ending_at(run, 1_000)
    >>> moved.steps[0].start_time_ns, moved.steps[0].end_time_ns, moved.end_time_ns
    (990, 995, 1000)
    """
    known = [t for step in run.steps for t in (step.start_time_ns, step.end_time_ns) if t is not None]
    known += [t for t in (run.start_time_ns, run.end_time_ns) if t is not None]
    if not known:
        return run
    by = end_time_ns - max(known)
    steps = tuple(
        replace(step, start_time_ns=_shift(step.start_time_ns, by), end_time_ns=_shift(step.end_time_ns, by))
        for step in run.steps
    )
    return replace(
        run, steps=steps, start_time_ns=_shift(run.start_time_ns, by), end_time_ns=_shift(run.end_time_ns, by)
    )


def _new_input_attributes(steps: Sequence[Step], upto: int, policy: ContentPolicy) -> attrs.Attributes:
    """The messages a model call saw that are new since the previous answer (the full history is the trace).

    Marked with ``agent_eval.input_messages.scope="new"``, so that a reader does not take them for the whole
    prompt. Built from steps here (not passed to ``chat_request_attributes`` as caller messages), so that the
    policy is applied once.
    """
    if not policy.capture:
        return {}
    start = upto
    while start > 0 and not isinstance(steps[start - 1], AssistantMessage):
        start -= 1
    return {
        sc.GEN_AI_INPUT_MESSAGES: dumps([step_message(s, policy) for s in steps[start:upto]]),
        sc.AGENT_EVAL_INPUT_MESSAGES_SCOPE: "new",
    }


class _PresetTraceIds(RandomIdGenerator):
    """Random ids, except the trace id set for the next root span (a run's own trace id)."""

    def __init__(self) -> None:
        self.next_trace_id: int | None = None

    def generate_trace_id(self) -> int:
        preset, self.next_trace_id = self.next_trace_id, None
        return preset if preset else super().generate_trace_id()


class RunSpanWriter:
    """Turns :class:`~otel_agent_eval.model.AgentRun` objects into finished SDK spans, one trace per run."""

    def __init__(
        self,
        *,
        content: ContentPolicy | None = None,
        include_reference: bool = True,
        resource: Resource | None = None,
    ) -> None:
        # Recorded runs are data the user chose to import: content is captured unless a policy says otherwise.
        self._policy = content or ContentPolicy(capture=True)
        self._include_reference = include_reference
        self._exporter = InMemorySpanExporter()
        self._ids = _PresetTraceIds()
        self._provider = TracerProvider(
            resource=resource or Resource.create({"service.name": "otel-agent-eval-import"}), id_generator=self._ids
        )
        self._provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        self._tracer = self._provider.get_tracer("otel_agent_eval.import", __version__)

    def spans(self, run: AgentRun, *, end_time_ns: int | None = None) -> list[ReadableSpan]:
        """The run's spans: the root first, then one span per step in order."""
        self._exporter.clear()
        times = self._timeline(run, end_time_ns)
        policy = self._policy
        root_attrs = attrs.run_attributes(
            agent_name=run.agent_name,
            conversation_id=run.conversation_id,
            system_instructions=run.system_instructions,
            tool_definitions=run.tool_definitions,
            policy=policy,
        )
        root_attrs.update(attrs.source_attributes(run))
        if run.outcome is not None:
            root_attrs.update(attrs.outcome_attributes(run.outcome))
        if run.reference is not None and self._include_reference:
            root_attrs.update(attrs.reference_attributes(run.reference, policy))
        root_start = min((t[0] for t in times), default=time.time_ns())
        root_end = max((t[1] for t in times), default=root_start)
        self._ids.next_trace_id = int(run.trace_id, 16) if run.trace_id else None
        root = self._tracer.start_span(
            attrs.run_span_name(run.agent_name), kind=SpanKind.INTERNAL, attributes=root_attrs, start_time=root_start
        )
        context = trace.set_span_in_context(root)
        for i, step in enumerate(run.steps):
            if isinstance(step, UserMessage):
                step_attrs, kind = attrs.user_attributes(step, policy), SpanKind.INTERNAL
            elif isinstance(step, AssistantMessage):
                step_attrs = attrs.chat_request_attributes(step, policy, conversation_id=run.conversation_id)
                step_attrs.update(_new_input_attributes(run.steps, i, policy))
                step_attrs.update(attrs.response_attributes(step, policy))
                kind = SpanKind.CLIENT
            else:
                step_attrs = attrs.tool_attributes(step, policy, conversation_id=run.conversation_id)
                kind = SpanKind.INTERNAL
            span = self._tracer.start_span(
                attrs.span_name(step), context=context, kind=kind, attributes=step_attrs, start_time=times[i][0]
            )
            if isinstance(step, ToolExecution) and step.error is not None:
                span.set_status(Status(StatusCode.ERROR, policy.text(step.error)))
            span.end(end_time=times[i][1])
        root.end(end_time=max(root_end, run.end_time_ns or 0) or None)
        finished = list(self._exporter.get_finished_spans())
        self._exporter.clear()
        return [finished[-1], *finished[:-1]]

    @staticmethod
    def _timeline(run: AgentRun, end_time_ns: int | None) -> list[tuple[int, int]]:
        """(start, end) per step: recorded times where known, else 1 ms slots after the previous step."""
        n = len(run.steps)
        end = end_time_ns if end_time_ns is not None else time.time_ns()
        cursor = run.start_time_ns or (end - n * STEP_SPACING_NS)
        out = []
        for step in run.steps:
            start = step.start_time_ns if step.start_time_ns is not None else cursor
            stop = step.end_time_ns if step.end_time_ns is not None else start + STEP_SPACING_NS
            stop = max(stop, start)
            out.append((start, stop))
            cursor = max(stop, start + 1)
        return out

    def shutdown(self) -> None:
        self._provider.shutdown()
