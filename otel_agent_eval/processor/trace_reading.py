"""A trace read as it grows: each span decoded and read once, however often the open trace is looked at.

A long conversation is looked at every ``early_evaluation_interval`` seconds while it is open, then evaluated
when it is complete. Without memory, each look would decode every span of the trace so far again (protobuf
attributes to Python values, JSON messages to chat messages): a trace of n spans looked at k times would cost
n*k span decodings. A :class:`TraceReading` keeps the records and readings of the spans already seen, so each
look and the final evaluation only decode the spans that arrived since the last one; it also remembers the
last steps each run's looks judged, so that a look judges only the steps new since the one before it and
the steps that one judged as new (``Engine.evaluate(..., focus=...)``): an open trace is never judged whole
again, each step is judged by two looks at most.

>>> from opentelemetry.proto.resource.v1.resource_pb2 import Resource
>>> from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
>>> from opentelemetry.proto.trace.v1.trace_pb2 import Span
>>> from otel_agent_eval.ingest.span_record import key_value
>>> span = Span(trace_id=b"t" * 16, span_id=b"u" * 8, name="user_message")
>>> span.attributes.extend([key_value("agent_eval.step.kind", "user"), key_value("agent_eval.step.index", 0)])
>>> entries = [SpanEntry(Resource(), InstrumentationScope(), span)]
>>> reading = TraceReading()
>>> [run] = reading.runs(entries)
>>> [step.kind for step in run.steps], reading.decoded
(['user'], 1)
>>> _ = reading.runs(entries)  # looked at again: nothing decoded again
>>> reading.decoded
1
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..ingest.dialects import SpanReading, read_span
from ..ingest.span_record import SpanRecord, attributes_from_proto
from ..ingest.spans import runs_from_records
from ..model import AgentRun
from .assembly import SpanEntry


class TraceReading:
    """The records and readings of one trace's spans so far (``entries`` only ever grows at its end)."""

    def __init__(self) -> None:
        self._records: list[SpanRecord] = []
        self._readings: dict[int, SpanReading] = {}
        self._resources: dict[int, dict[str, object]] = {}
        self._lock = threading.Lock()
        self.judged: dict[str, tuple[int, int]] = {}
        """Per run (its root span id): the last step index the last early look judged, and the one before."""

    @property
    def decoded(self) -> int:
        """How many spans have been decoded (for tests and the benchmark)."""
        return len(self._records)

    def records(self, entries: Sequence[SpanEntry]) -> list[SpanRecord]:
        """The records of ``entries``, decoding only those not decoded before."""
        with self._lock:  # an early look may still run while the final evaluation starts
            for entry in entries[len(self._records) :]:
                resource = self._resources.get(id(entry.resource))
                if resource is None:  # the resource objects live as long as the entries that hold them
                    resource = self._resources[id(entry.resource)] = attributes_from_proto(entry.resource.attributes)
                self._records.append(SpanRecord.from_proto(entry.span, resource, lean=True))
            return self._records[: len(entries)]

    def read(self, record: SpanRecord) -> SpanReading:
        """:func:`read_span`, once per record (a record's reading never changes; two threads reading one record
        at once would both make the same reading, and one is kept)."""
        reading = self._readings.get(id(record))
        if reading is None:
            reading = self._readings[id(record)] = read_span(record)
        return reading

    def runs(self, entries: Sequence[SpanEntry]) -> list[AgentRun]:
        """The runs of the trace as far as ``entries`` go."""
        return runs_from_records(self.records(entries), read=self.read)

    def steps_to_judge(self, run: AgentRun) -> frozenset[int]:
        """The steps of ``run`` an early look judges now: those new since the last look, and those the last
        look judged as new (a finding may rest on the step after it: a tool error the agent did not fix, a
        repeat that a later call confirms). Each step is judged by at most two looks, whatever the length of
        the trace; findings at older steps are left to the final evaluation."""
        key = run.root_span_id or ""
        with self._lock:  # two looks at one trace may run at once (one slower than the interval)
            last, before = self.judged.get(key, (-1, -1))
            steps = frozenset(step.index for step in run.steps if step.index > before)
            if run.steps:
                self.judged[key] = (max(last, max(step.index for step in run.steps)), last)
        return steps
