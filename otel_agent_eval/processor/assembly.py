"""Trace assembly: spans grouped by trace id until the trace is complete enough to evaluate.

A trace is *ready* when its root span (a span with no parent) has arrived and no span has arrived for the
quiet period, or when its first span arrived longer ago than the maximum wait. A root that is the first model
call of a loop an auto-instrumentor follows (``agent_eval.run.followed``) ends long before the loop does: such
a trace waits the loop quiet period instead, a pause longer than the one between two model calls, and is not
released at the maximum wait (its later part would repeat the whole conversation).

Memory is bounded: when more traces are in flight than allowed, the oldest is released early; a trace that
reaches the span limit is released at once. Both are counted, and an early release is still evaluated and
forwarded: spans are never dropped. A span that arrives after its trace was released starts a new (partial)
trace, which is evaluated and forwarded the same way.

>>> from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
>>> clock = [0.0]
>>> assembler = TraceAssembler(quiet_period=1.0, max_wait=30.0, clock=lambda: clock[0])
>>> rs = ResourceSpans()
>>> _ = rs.scope_spans.add().spans.add(trace_id=b"t" * 16, span_id=b"r" * 8, name="invoke_agent")
>>> assembler.add(ResourceSpansBatch.of([rs]))
1
>>> assembler.ready()
[]
>>> clock[0] = 2.0
>>> [len(t.spans) for t in assembler.ready()]
[1]
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from ..semconv import AGENT_EVAL_RUN_FOLLOWED
from .settings import Component, setting

if TYPE_CHECKING:
    from .trace_reading import TraceReading


@dataclass(frozen=True)
class AssemblyConfig(Component):
    """When a trace is whole: how long to wait for late spans, and how much to buffer at most."""

    section = "assembly"
    quiet_period: float = setting(
        2.0, "Seconds without a new span, after the root span ended, before a trace is evaluated.", minimum=0
    )
    loop_quiet_period: float = setting(
        10.0,
        "The quiet period of a trace whose root is the first model call of an agent loop followed by an "
        "auto-instrumentor (it ends long before the loop): longer than a pause between two model calls.",
        minimum=0,
    )
    max_wait: float = setting(
        30.0,
        "Seconds after its first span when a trace is evaluated even without its root (not a followed loop).",
        minimum=0,
    )
    max_traces: int = setting(
        10_000, "Traces buffered at most; beyond, the oldest is evaluated early and forwarded (counted).", minimum=1
    )
    max_spans_per_trace: int = setting(
        5_000, "Spans buffered per trace at most; a trace reaching it is evaluated at once (counted).", minimum=1
    )


class SpanEntry(NamedTuple):
    """A span with the resource and scope it was sent under (kept to forward it as it came). A named tuple:
    one is made for every span received, and a tuple is the cheapest object to make."""

    resource: Resource
    scope: InstrumentationScope
    span: Span
    resource_schema_url: str = ""
    scope_schema_url: str = ""


@dataclass
class ResourceSpansBatch:
    """The spans of one export request, flattened."""

    entries: list[SpanEntry]
    inbox_id: int | None = None
    """Where the request is kept on disk until its traces are handed on."""

    @classmethod
    def of(cls, resource_spans: Iterable[ResourceSpans], inbox_id: int | None = None) -> ResourceSpansBatch:
        entries: list[SpanEntry] = []
        for rs in resource_spans:
            # One object per resource and per scope, shared by their spans: what encode_request groups by.
            resource, resource_schema = rs.resource, rs.schema_url
            for ss in rs.scope_spans:
                scope, scope_schema = ss.scope, ss.schema_url
                entries.extend(
                    _new(SpanEntry, (resource, scope, span, resource_schema, scope_schema)) for span in ss.spans
                )
        return cls(entries, inbox_id)

    def trace_ids(self) -> set[bytes]:
        return {bytes(e.span.trace_id) for e in self.entries}


_new = tuple.__new__  # a named tuple made without the call to its __new__ (twice as fast, per span received)

ReleaseReason = str  # "complete" | "max_wait" | "trace_limit" | "span_limit" | "shutdown"


@dataclass
class PendingTrace:
    trace_id: bytes
    first_seen: float
    last_seen: float
    spans: list[SpanEntry] = field(default_factory=list)
    inbox_ids: set[int] = field(default_factory=set)
    root_seen: bool = False
    followed_root: bool = False
    reason: ReleaseReason = "complete"
    early_spans: int = 0
    """How many spans the trace had when it was last evaluated while still open (0: never)."""
    early_at: float = 0.0
    early_findings: set[tuple[str, str, int]] = field(default_factory=set)
    """(evaluator, mode, step) of the failures already reported while the trace was open."""
    reading: TraceReading | None = None
    """Its spans as decoded so far (made by the first look at it): looks and the final evaluation decode each
    span once."""
    judge_submitted: bool = False
    """Its runs were offered to the judge (once, however often it is handed on)."""
    labelled: list[Any] | None = None
    """Once its spans are labelled, its evaluations: a trace handed on again (after a store error) is neither
    evaluated nor labelled twice (labels would repeat their events, and the metrics count twice)."""


class TraceAssembler:
    """Thread-safe buffer of traces in flight. ``add`` is cheap (the receive path); ``ready`` releases traces."""

    def __init__(
        self,
        *,
        quiet_period: float = 2.0,
        loop_quiet_period: float = 10.0,
        max_wait: float = 30.0,
        max_traces: int = 10_000,
        max_spans_per_trace: int = 5_000,
        clock: Callable[[], float] = time.monotonic,
        on_limit: Callable[[ReleaseReason], None] | None = None,
    ) -> None:
        self.quiet_period = quiet_period
        self.loop_quiet_period = loop_quiet_period
        self.max_wait = max_wait
        self.max_traces = max_traces
        self.max_spans_per_trace = max_spans_per_trace
        self._clock = clock
        self._on_limit = on_limit
        self._lock = threading.Lock()
        self._traces: OrderedDict[bytes, PendingTrace] = OrderedDict()
        self._released: list[PendingTrace] = []
        self._in_flight = 0  # spans buffered, kept as traces come and go: asked on every request

    def __len__(self) -> int:
        with self._lock:
            return len(self._traces)

    def spans_in_flight(self) -> int:
        return self._in_flight  # an int read: atomic, and a moment stale at worst (it bounds memory, roughly)

    def add(self, batch: ResourceSpansBatch) -> int:
        """Take a batch of spans; returns how many were taken (all of them, always)."""
        now = self._clock()
        with self._lock:
            for entry in batch.entries:
                trace_id = bytes(entry.span.trace_id)
                pending = self._traces.get(trace_id)
                if pending is None:
                    pending = self._traces[trace_id] = PendingTrace(trace_id, now, now)
                pending.spans.append(entry)
                self._in_flight += 1
                pending.last_seen = now
                if batch.inbox_id is not None:
                    pending.inbox_ids.add(batch.inbox_id)
                if not entry.span.parent_span_id:
                    pending.root_seen = True
                    pending.followed_root = any(
                        kv.key == AGENT_EVAL_RUN_FOLLOWED and kv.value.bool_value for kv in entry.span.attributes
                    )
                if len(pending.spans) >= self.max_spans_per_trace:
                    self._release(trace_id, "span_limit")
            while len(self._traces) > self.max_traces:
                oldest = next(iter(self._traces))
                self._release(oldest, "trace_limit")
        return len(batch.entries)

    def _release(self, trace_id: bytes, reason: ReleaseReason) -> None:
        pending = self._traces.pop(trace_id)
        self._in_flight -= len(pending.spans)
        pending.reason = reason
        self._released.append(pending)
        if reason != "complete" and self._on_limit is not None:
            self._on_limit(reason)

    def open_for_early_evaluation(self, interval: float) -> list[tuple[PendingTrace, list[SpanEntry]]]:
        """Traces open for ``interval`` seconds or more that received spans since their last early evaluation
        (at most one every ``interval`` seconds each), with a snapshot of their spans so far."""
        now = self._clock()
        due = []
        with self._lock:
            for pending in self._traces.values():
                # The first look only once the trace is `interval` old: short traces are released (and evaluated)
                # before that, and never cost an extra evaluation.
                last = max(pending.early_at, pending.first_seen)
                if len(pending.spans) > pending.early_spans and now - last >= interval:
                    pending.early_spans, pending.early_at = len(pending.spans), now
                    due.append((pending, list(pending.spans)))
        return due

    def ready(self) -> list[PendingTrace]:
        """Traces to evaluate now: complete ones, ones waited on long enough, and ones released at a limit."""
        now = self._clock()
        with self._lock:
            for trace_id, pending in list(self._traces.items()):
                quiet = self.loop_quiet_period if pending.followed_root else self.quiet_period
                if pending.root_seen and now - pending.last_seen >= quiet:
                    self._release(trace_id, "complete")
                elif now - pending.first_seen >= self.max_wait and not pending.followed_root:
                    # A followed loop is not cut at the maximum wait: a later part would carry the whole
                    # conversation again in its prompts, and its failures would be counted twice. The limits on
                    # traces and spans in flight still bound it.
                    self._release(trace_id, "max_wait")
            out, self._released = self._released, []
        return out

    def drain(self) -> list[PendingTrace]:
        """Everything still buffered (on shutdown): released as it is."""
        with self._lock:
            for trace_id in list(self._traces):
                self._release(trace_id, "shutdown")
            out, self._released = self._released, []
        return out


def _field(out: bytearray, number: int, payload: bytes | bytearray) -> None:
    """A length-delimited protobuf field: its tag, its length as a varint, its bytes."""
    out.append(number << 3 | 2)
    size = len(payload)
    while size > 0x7F:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    out += payload


def encode_request(entries: Iterable[SpanEntry]) -> bytes:
    """The spans as one serialized ``ExportTraceServiceRequest``, under their resources and scopes, written on
    the wire directly: each span serialized once, as it is now (labels included), nothing copied, and spans
    grouped by the resource and scope objects they came with (a request's spans share them), not by their
    serialized content (spans of several requests can make several groups of one resource: valid OTLP)."""
    groups: dict[int, tuple[SpanEntry, dict[int, tuple[SpanEntry, list[bytes]]]]] = {}
    for entry in entries:
        by_resource = groups.get(id(entry.resource))
        if by_resource is None:
            by_resource = groups[id(entry.resource)] = (entry, {})
        by_scope = by_resource[1].get(id(entry.scope))
        if by_scope is None:
            by_scope = by_resource[1][id(entry.scope)] = (entry, [])
        by_scope[1].append(entry.span.SerializeToString())
    out = bytearray()
    for first, scopes in groups.values():
        resource_spans = bytearray()
        _field(resource_spans, 1, first.resource.SerializeToString())
        for scope_first, spans in scopes.values():
            scope_spans = bytearray()
            _field(scope_spans, 1, scope_first.scope.SerializeToString())
            for span in spans:  # _field(scope_spans, 2, span), inlined for the sizes spans have: once per span
                size = len(span)
                if size < 0x80:
                    scope_spans += bytes((0x12, size))
                elif size < 0x4000:
                    scope_spans += bytes((0x12, size & 0x7F | 0x80, size >> 7))
                else:
                    _field(scope_spans, 2, span)
                    continue
                scope_spans += span
            if scope_first.scope_schema_url:
                _field(scope_spans, 3, scope_first.scope_schema_url.encode())
            _field(resource_spans, 2, scope_spans)
        if first.resource_schema_url:
            _field(resource_spans, 3, first.resource_schema_url.encode())
        _field(out, 1, resource_spans)
    return bytes(out)
