"""Spans back into agent runs: one run per agent span (or per trace, without one) that holds agent steps.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
>>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
>>> from otel_agent_eval.instrument import agent_run
>>> exporter, provider = InMemorySpanExporter(), TracerProvider()
>>> provider.add_span_processor(SimpleSpanProcessor(exporter))
>>> with agent_run("support", tracer_provider=provider) as run:
...     run.user_message("hi")
...     with run.chat(model="m") as call:
...         _ = call.set_response(content="hello")
>>> [run] = runs_from_spans(exporter.get_finished_spans())
>>> [(s.kind, s.content) for s in run.steps], run.agent_name
([('user', 'hi'), ('assistant', 'hello')], 'support')

Spans written by this package carry one step each. For spans of other instrumentations, where model calls
carry the whole prompt, the conversation is rebuilt from the successive prompts and answers, and tool spans
are matched to the tool results by call id (or by name and order). A trace without agent steps yields no run:
its spans are not agent steps and pass through untouched.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from .. import semconv as sc
from ..model import AgentRun, AssistantMessage, Step, ToolExecution, UserMessage
from .dialects import SpanReading, read_span
from .messages import ChatMessage, messages_to_steps, read_as_said
from .span_record import SpanRecord, records_from_request

logger = logging.getLogger(__name__)


def runs_from_spans(spans: Iterable[ReadableSpan | SpanRecord]) -> list[AgentRun]:
    """SDK spans (or records) as runs, one per agent run that holds steps, in order of first appearance."""
    records = [s if isinstance(s, SpanRecord) else SpanRecord.from_readable(s) for s in spans]
    return runs_from_records(records)


def runs_from_request(request: ExportTraceServiceRequest) -> list[AgentRun]:
    """The runs in an OTLP export request."""
    return runs_from_records(list(records_from_request(request)))


Reader = Callable[[SpanRecord], SpanReading]
"""How a span is read (:func:`~otel_agent_eval.ingest.dialects.read_span`, or one that remembers its readings,
for a trace read again as it grows)."""


def runs_from_records(records: Iterable[SpanRecord], *, read: Reader = read_span) -> list[AgentRun]:
    """One run per agent in each trace that holds agent steps, in order of first appearance."""
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for record in records:
        by_trace[record.trace_id].append(record)
    return [run for spans in by_trace.values() for run in trace_to_runs(spans, read=read)]


def trace_to_runs(spans: Sequence[SpanRecord], *, read: Reader = read_span) -> list[AgentRun]:
    """The agent runs in one trace's spans: none when they hold no agent step. ``read`` must not change the
    readings it returns once made (they are only read here).

    Each step belongs to its nearest enclosing agent span: a sub-agent invoked inside a tool of the main run is
    a run of its own, and the main run's steps do not include the sub-agent's. Steps under no agent span make
    one run together.
    """
    ordered = sorted(spans, key=lambda s: (s.start_time_ns, s.end_time_ns))
    readings = [(s, read(s)) for s in ordered]
    trace = _Trace(ordered, readings)
    groups: dict[str | None, list[tuple[SpanRecord, SpanReading]]] = {}
    for s, r in readings:
        groups.setdefault(trace.owner(s), []).append((s, r))
    with_steps = {owner: members for owner, members in groups.items() if any(_is_step(r) for _, r in members)}
    runs = []
    for owner, members in with_steps.items():
        if owner is None and len(with_steps) == 1 and trace.agents:
            # Agent spans that enclose no step (parenting lost on the way): the first one still names the run.
            agent, chain = trace.agents[0], [r for _, r in trace.agents]
        elif owner is None:
            agent, chain = None, []
        else:
            agent, chain = trace.by_id[owner], trace.agent_chain(owner)
        runs.append(_group_run(trace, members, agent, chain))
    return runs


class _Trace:
    """A trace's spans, their parents and their agent spans."""

    def __init__(self, ordered: list[SpanRecord], readings: list[tuple[SpanRecord, SpanReading]]) -> None:
        self.ordered = ordered
        self.parents = span_parents(ordered)
        self.by_id = {s.span_id: (s, r) for s, r in readings}
        self.agents = [(s, r) for s, r in readings if r.kind == "agent"]

    def ancestors(self, span: SpanRecord) -> set[str]:
        return _ancestors(span, self.parents)

    def owner(self, span: SpanRecord) -> str | None:
        """The nearest agent span at or above ``span``."""
        seen: set[str] = set()
        current: str | None = span.span_id
        while current is not None and current in self.parents and current not in seen:
            if self.by_id[current][1].kind == "agent":
                return current
            seen.add(current)
            current = self.parents[current]
        return None

    def agent_chain(self, agent_id: str) -> list[SpanReading]:
        """The agent's reading, then those of the agents around it, nearest first."""
        chain: list[SpanReading] = []
        seen: set[str] = set()
        current: str | None = agent_id
        while current is not None and current not in seen:
            seen.add(current)
            chain.append(self.by_id[current][1])
            parent = self.parents[current]
            current = self.owner(self.by_id[parent][0]) if parent in self.by_id else None
        return chain


def _is_step(reading: SpanReading) -> bool:
    return reading.kind in ("model", "tool", "user")


def _group_run(
    trace: _Trace,
    members: list[tuple[SpanRecord, SpanReading]],
    agent: tuple[SpanRecord, SpanReading] | None,
    chain: list[SpanReading],
) -> AgentRun:
    """The run of one agent span (``agent``), or of the steps under none (``agent`` is ``None``)."""
    steps_read = [(s, r) for s, r in members if _is_step(r)]
    # A model span inside another model span, while it lasts, with the same prompt (or none) is the same call
    # seen twice (an SDK that traces itself under an instrumentor's span, two instrumentations of one client):
    # the outer one stands for it. A later call under an earlier one is a step of its own (an auto-instrumented
    # loop's calls hang under its first; a stream left unfinished keeps its span open).
    models = {s.span_id: (s, r) for s, r in steps_read if r.kind == "model"}

    def same_call(span: SpanRecord, reading: SpanReading) -> bool:
        for ancestor in trace.ancestors(span):
            outer = models.get(ancestor)
            if (
                outer is not None
                and outer[0].end_time_ns >= span.start_time_ns
                and (not (reading.inputs or reading.outputs) or reading.inputs == outer[1].inputs)
            ):
                return True
        return False

    steps_read = [(s, r) for s, r in steps_read if r.kind != "model" or not same_call(s, r)]
    ours = {s.span_id for s, r in steps_read if r.step_index is not None}
    if ours:
        # A model or tool span of another instrumentation inside one of our step spans (an auto-instrumented
        # client under `run.chat`) is the same step again.
        steps_read = [(s, r) for s, r in steps_read if s.span_id in ours or not trace.ancestors(s) & ours]
    if all(r.step_index is not None for _, r in steps_read):
        system, steps = _explicit_steps(steps_read)
    else:
        system, steps = _rebuilt_steps(steps_read)

    if agent is not None:
        root, root_reading = agent[0], agent[1]
    else:
        # Without an agent span, the run is the innermost span around all its steps.
        lines = [trace.ancestors(s) | {s.span_id} for s, _ in steps_read]
        around = set.intersection(*lines) if lines else set()
        candidates = [s for s in trace.ordered if s.span_id in around]
        top = next((s for s in trace.ordered if trace.parents.get(s.span_id) not in trace.parents), trace.ordered[0])
        root = max(candidates, key=lambda s: len(trace.ancestors(s))) if candidates else top
        root_reading = None
    own = [r for _, r in members]
    tools = next((r.tool_definitions for r in [*chain, *own] if r.tool_definitions), ())
    instructions = next((r.system_instructions for r in chain if r.system_instructions), None)
    instructions = instructions or system or next((r.system_instructions for r in own if r.system_instructions), None)
    run = AgentRun(
        steps=tuple(steps),
        trace_id=root.trace_id,
        root_span_id=root.span_id,
        agent_name=root_reading.agent_name if root_reading else _auto_agent_name(root, members),
        conversation_id=next((r.conversation_id for r in [*own, *chain] if r.conversation_id), None),
        system_instructions=instructions,
        tool_definitions=tools,
        outcome=root_reading.outcome if root_reading else None,
        reference=root_reading.reference if root_reading else None,
        source=root_reading.source if root_reading else None,
        start_time_ns=root.start_time_ns,
        end_time_ns=root.end_time_ns,
    )
    _warn_duplicate_indices(run)
    return run


def _auto_agent_name(root: SpanRecord, members: list[tuple[SpanRecord, SpanReading]]) -> str | None:
    """The agent of a run without an agent span (an auto-instrumented loop): the first ``gen_ai.agent.name`` its
    spans carry, else the service that sent them (the resource's ``service.name``, unless the SDK's default)."""
    for span in [root, *(s for s, _ in members)]:
        name = span.attributes.get(sc.GEN_AI_AGENT_NAME)
        if isinstance(name, str) and name.strip():
            return name.strip()
    for span in [root, *(s for s, _ in members)]:
        service = span.resource.get(sc.SERVICE_NAME)
        if isinstance(service, str) and service.strip() and not service.startswith("unknown_service"):
            return service.strip()
    return None


def _warn_duplicate_indices(run: AgentRun) -> None:
    counts = Counter(step.index for step in run.steps)
    duplicates = sorted(index for index, n in counts.items() if n > 1)
    if duplicates:
        # Both steps are kept (in the order their spans started); which one is right cannot be told from here.
        logger.warning("trace %s: several step spans carry agent_eval.step.index %s", run.trace_id, duplicates)


def _ancestors(span: SpanRecord, parents: dict[str, str | None]) -> set[str]:
    """The ids of the span's ancestors present in the trace (``parents``: :func:`span_parents`)."""
    out: set[str] = set()
    parent = parents.get(span.span_id, span.parent_span_id)
    while parent is not None and parent in parents and parent not in out and parent != span.span_id:
        out.add(parent)
        parent = parents[parent]
    return out


def span_parents(spans: Sequence[SpanRecord]) -> dict[str, str | None]:
    """Each span id's parent id, with every cycle of parent links broken.

    A span that is its own parent, or a ring of spans each the parent of the next, has no root: the span of
    the cycle that comes first in ``spans`` (the readers pass them in start order) is taken for its root, with a
    warning naming it. Of two spans with one id (a broken exporter), the later one's parent counts.

    >>> a = SpanRecord("t", "a", "b", "chat", 0, 1, {})
    >>> span_parents([a, SpanRecord("t", "b", "a", "chat", 1, 2, {}), SpanRecord("t", "c", "c", "chat", 2, 3, {})])
    {'a': None, 'b': 'a', 'c': None}
    """
    parents = {s.span_id: s.parent_span_id for s in spans}
    position: dict[str, int] = {}
    for i, s in enumerate(spans):
        position.setdefault(s.span_id, i)
    acyclic: set[str] = set()
    for s in spans:
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = s.span_id
        while current is not None and current in parents and current not in acyclic:
            if current in on_path:
                root = min(path[path.index(current) :], key=position.__getitem__)
                logger.warning(
                    "span %s (trace %s): a cycle of parent links (%d spans); read as a root",
                    root,
                    s.trace_id,
                    len(path) - path.index(current),
                )
                parents[root] = None
                break
            path.append(current)
            on_path.add(current)
            current = parents[current]
        acyclic.update(path)
    return parents


def _explicit_steps(steps_read: list[tuple[SpanRecord, SpanReading]]) -> tuple[str | None, list[Step]]:
    """Our own spans: one step per span, at the index the span carries."""
    steps: list[Step] = []
    system = None
    for span, r in sorted(steps_read, key=lambda sr: sr[1].step_index or 0):
        common: dict[str, Any] = {
            "index": r.step_index or 0,
            "start_time_ns": span.start_time_ns,
            "end_time_ns": span.end_time_ns,
            "span_id": span.span_id,
        }
        system = system or r.system_instructions
        if r.kind == "user":
            said = next((m for m in r.inputs if m.role == "user"), ChatMessage(role="user"))
            steps.append(UserMessage(content=said.content, tool_calls=said.tool_calls, **common))
        elif r.kind == "tool":
            steps.append(
                ToolExecution(
                    name=r.tool_name or "unknown",
                    call_id=r.tool_call_id,
                    arguments=r.tool_arguments,
                    result=r.tool_result,
                    error=r.tool_error,
                    requested_by=r.tool_requested_by,
                    **common,
                )
            )
        else:
            # Read as what it says, its reasoning kept (the GenAI reader has done so; reading again changes nothing).
            out = read_as_said(r.outputs[0]) if r.outputs else ChatMessage(role="assistant")
            steps.append(
                AssistantMessage(
                    content=out.content,
                    reasoning=out.reasoning,
                    tool_calls=out.tool_calls,
                    model=out.model,
                    provider=out.provider,
                    input_tokens=out.input_tokens,
                    output_tokens=out.output_tokens,
                    finish_reason=out.finish_reason,
                    **common,
                )
            )
    return system, steps


def _rebuilt_steps(steps_read: list[tuple[SpanRecord, SpanReading]]) -> tuple[str | None, list[Step]]:
    """Spans of other instrumentations: the conversation from successive prompts, then the tool spans."""
    conversation: list[ChatMessage] = []
    for span, r in steps_read:
        if r.kind == "user":
            _merge(
                conversation,
                [
                    replace(m, span_id=span.span_id, start_time_ns=span.start_time_ns, end_time_ns=span.end_time_ns)
                    for m in r.inputs
                ],
            )
        elif r.kind == "model":
            stamped = [
                replace(
                    m,
                    span_id=m.span_id or span.span_id,
                    start_time_ns=m.start_time_ns or span.start_time_ns,
                    end_time_ns=m.end_time_ns or span.start_time_ns,
                )
                for m in r.inputs
            ]
            _merge(conversation, stamped)
            conversation.extend(r.outputs)
    claimed: list[ChatMessage] = []
    tool_spans = {span.span_id: r for span, r in steps_read if r.kind == "tool"}
    for span, r in steps_read:
        if r.kind == "tool":
            others = {t.tool_call_id for sid, t in tool_spans.items() if sid != span.span_id and t.tool_call_id}
            _place_tool(conversation, claimed, span, r, others)
    system, steps = messages_to_steps(conversation)
    for i, step in enumerate(steps):
        tool = tool_spans.get(step.span_id or "") if isinstance(step, ToolExecution) else None
        if isinstance(step, ToolExecution) and tool is not None:
            # The span knows whether the tool failed and why; the call, what the model asked for. The span's own
            # arguments stand in when no call was found (an OpenLLMetry span's positional "arg0" names are not
            # the call's, so the call comes first).
            steps[i] = replace(
                step,
                arguments=step.arguments if step.arguments is not None else tool.tool_arguments,
                error=tool.tool_error if tool.tool_error is not None else step.error,
                requested_by="user" if tool.tool_requested_by == "user" else step.requested_by,
            )
    return system, steps


def _merge(conversation: list[ChatMessage], prompt: Sequence[ChatMessage]) -> None:
    """Add the messages of ``prompt`` that the conversation does not hold yet.

    A prompt normally repeats the conversation so far and adds to it; a prompt that was trimmed or reordered
    is lined up message by message, so no message is counted twice and none is lost.
    """

    def find(message: ChatMessage, start: int) -> int | None:
        return next((j for j in range(start, len(conversation)) if conversation[j].same_message(message)), None)

    # New messages before the first one already held go just before it; a prompt that holds none of the
    # conversation (an API that keeps the history server-side sends only the new items) goes at its end.
    first = next((j for j in (find(m, 0) for m in prompt) if j is not None), None)
    position = len(conversation) if first is None else first
    for message in prompt:
        match = find(message, position)
        if match is None:
            conversation.insert(position, message)
            position += 1
        else:
            position = match + 1


def _place_tool(
    conversation: list[ChatMessage],
    claimed: list[ChatMessage],
    span: SpanRecord,
    r: SpanReading,
    other_call_ids: set[str],
) -> None:
    """Attach a tool span to the tool result it produced, or add it as a step where it ran.

    ``claimed`` holds the tool messages already matched to a span, so that two spans never share one. Without a
    call id, a span takes the first free result of its own tool (named by the result, or by the call the result
    answers) given after it started; results of calls that another tool span names by id are left to that span.
    """
    call_names = {c.id: c.name for m in conversation for c in m.tool_calls if c.id}
    free = [i for i, m in enumerate(conversation) if m.role == "tool" and not any(m is c for c in claimed)]
    target = None
    if r.tool_call_id:
        target = next((i for i in free if conversation[i].tool_call_id == r.tool_call_id), None)
    if target is None:
        target = next(
            (
                i
                for i in free
                if conversation[i].tool_call_id not in other_call_ids
                and (conversation[i].tool_name or call_names.get(conversation[i].tool_call_id or ""))
                in (None, r.tool_name)
                and (conversation[i].start_time_ns or 0) >= span.start_time_ns
            ),
            None,
        )
    message = ChatMessage(
        role="tool",
        content=r.tool_result if r.tool_result is not None else r.tool_error,
        tool_call_id=r.tool_call_id,
        tool_name=r.tool_name,
        error=r.tool_error is not None,
        start_time_ns=span.start_time_ns,
        end_time_ns=span.end_time_ns,
        span_id=span.span_id,
    )
    if target is not None:
        old = conversation[target]
        message = replace(
            message,
            content=r.tool_result if r.tool_result is not None else old.content,
            tool_call_id=r.tool_call_id or old.tool_call_id,
            error=message.error or old.error,
        )
        conversation[target] = message
    else:
        at = next(
            (i for i, m in enumerate(conversation) if (m.start_time_ns or 0) > span.start_time_ns), len(conversation)
        )
        conversation.insert(at, message)
    claimed.append(message)
