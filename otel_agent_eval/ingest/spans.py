"""Spans back into agent runs: one run per trace that holds agent steps.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
>>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
>>> from otel_agent_eval.instrument import agent_run
>>> exporter, provider = InMemorySpanExporter(), TracerProvider()
>>> provider.add_span_processor(SimpleSpanProcessor(exporter))
>>> with agent_run("support", tracer_provider=provider) as run:
...     run.user_message("hi")
...     with run.chat(model="m") as call:
...         call.set_response(content="hello")
>>> [run] = runs_from_spans(exporter.get_finished_spans())
>>> [(s.kind, s.content) for s in run.steps], run.agent_name
([('user', 'hi'), ('assistant', 'hello')], 'support')

Spans written by this package carry one step each. For spans of other instrumentations, where model calls
carry the whole prompt, the conversation is rebuilt from the successive prompts and answers, and tool spans
are matched to the tool results by call id (or by name and order). A trace without agent steps yields no run:
its spans are not agent steps and pass through untouched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from ..model import AgentRun, AssistantMessage, Step, ToolExecution, UserMessage
from .dialects import SpanReading, read_span
from .messages import ChatMessage, messages_to_steps
from .span_record import SpanRecord, records_from_request


def runs_from_spans(spans: Iterable[ReadableSpan | SpanRecord]) -> list[AgentRun]:
    """SDK spans (or records) as runs, one per trace with agent steps, in order of first appearance."""
    records = [s if isinstance(s, SpanRecord) else SpanRecord.from_readable(s) for s in spans]
    return runs_from_records(records)


def runs_from_request(request: ExportTraceServiceRequest) -> list[AgentRun]:
    """The runs in an OTLP export request."""
    return runs_from_records(list(records_from_request(request)))


def runs_from_records(records: Iterable[SpanRecord]) -> list[AgentRun]:
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for record in records:
        by_trace[record.trace_id].append(record)
    runs = []
    for spans in by_trace.values():
        run = trace_to_run(spans)
        if run is not None:
            runs.append(run)
    return runs


def trace_to_run(spans: Sequence[SpanRecord]) -> AgentRun | None:
    """The agent run in one trace's spans, or ``None`` when they hold no agent step."""
    ordered = sorted(spans, key=lambda s: (s.start_time_ns, s.end_time_ns))
    readings = [(s, read_span(s)) for s in ordered]
    steps_read = [(s, r) for s, r in readings if r.kind in ("model", "tool", "user")]
    if not steps_read:
        return None
    parents = {s.span_id: s.parent_span_id for s in ordered}
    ours = {s.span_id for s, r in steps_read if r.step_index is not None}
    if ours:
        # A model or tool span of another instrumentation inside one of our step spans (an auto-instrumented
        # client under `run.chat`) is the same step again.
        steps_read = [(s, r) for s, r in steps_read if s.span_id in ours or not _ancestors(s, parents) & ours]
    if all(r.step_index is not None for _, r in steps_read):
        system, steps = _explicit_steps(steps_read)
    else:
        system, steps = _rebuilt_steps(steps_read)

    # The run is the innermost agent span around all its steps (or, with none around them all, the first agent
    # span); without agent spans, the innermost span around all the steps.
    around = set.intersection(*(_ancestors(s, parents) | {s.span_id} for s, _ in steps_read))
    agents = [(s, r) for s, r in readings if r.kind == "agent"]
    enclosing = [(s, r) for s, r in agents if s.span_id in around]
    chosen = max(enclosing, key=lambda sr: len(_ancestors(sr[0], parents))) if enclosing else None
    chosen = chosen or (agents[0] if agents else None)
    if chosen is not None:
        root, root_reading = chosen[0], chosen[1]
    else:
        candidates = [s for s in ordered if s.span_id in around]
        ids = set(parents)
        top = next((s for s in ordered if s.parent_span_id not in ids), ordered[0])
        root = max(candidates, key=lambda s: len(_ancestors(s, parents))) if candidates else top
        root_reading = None
    agent_readings = ([root_reading] if root_reading else []) + [r for _, r in agents]
    tools = next((r.tool_definitions for r in agent_readings if r.tool_definitions), ())
    tools = tools or next((r.tool_definitions for _, r in readings if r.tool_definitions), ())
    instructions = next((r.system_instructions for r in agent_readings if r.system_instructions), None)
    instructions = (
        instructions or system or next((r.system_instructions for _, r in readings if r.system_instructions), None)
    )
    return AgentRun(
        steps=tuple(steps),
        trace_id=root.trace_id,
        root_span_id=root.span_id,
        agent_name=root_reading.agent_name if root_reading else None,
        conversation_id=next((r.conversation_id for _, r in readings if r.conversation_id), None),
        system_instructions=instructions,
        tool_definitions=tools,
        outcome=root_reading.outcome if root_reading else None,
        reference=root_reading.reference if root_reading else None,
        source=root_reading.source if root_reading else None,
        start_time_ns=root.start_time_ns,
        end_time_ns=root.end_time_ns,
    )


def _ancestors(span: SpanRecord, parents: dict[str, str | None]) -> set[str]:
    """The ids of the span's ancestors present in the trace."""
    out: set[str] = set()
    parent = span.parent_span_id
    while parent is not None and parent in parents and parent not in out:
        out.add(parent)
        parent = parents[parent]
    return out


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
            text = next((m.content for m in r.inputs if m.role == "user"), None)
            steps.append(UserMessage(content=text, **common))
        elif r.kind == "tool":
            steps.append(
                ToolExecution(
                    name=r.tool_name or "unknown",
                    call_id=r.tool_call_id,
                    arguments=r.tool_arguments,
                    result=r.tool_result,
                    error=r.tool_error,
                    **common,
                )
            )
        else:
            out = r.outputs[0] if r.outputs else ChatMessage(role="assistant")
            steps.append(
                AssistantMessage(
                    content=out.content,
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
