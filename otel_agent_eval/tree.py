"""Traces as text trees, one line per span, with what each agent step said or did.

>>> from otel_agent_eval.ingest.span_record import SpanRecord
>>> root = SpanRecord("t" * 32, "a" * 16, None, "invoke_agent", 0, 2_000_000, {"gen_ai.operation.name": "invoke_agent"})
>>> user = SpanRecord("t" * 32, "b" * 16, "a" * 16, "user_message", 0, 1_000_000,
...                   {"agent_eval.step.kind": "user", "agent_eval.step.index": 1,
...                    "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]'})
>>> print(render_trace([root, user]))
trace tttttttttttttttttttttttttttttttt  invoke_agent  (2 spans, 2.0 ms)
└── [1] user_message  "hi"
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from . import semconv as sc
from .ingest.dialects import SpanReading, read_span
from .ingest.span_record import SpanRecord
from .ingest.spans import span_parents, trace_to_runs


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _call(name: str, arguments: Mapping[str, Any] | None, width: int) -> str:
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (arguments or {}).items())
    return _clip(f"{name}({args})", width)


def describe(span: SpanRecord, reading: SpanReading, width: int, marks: Sequence[str] = ()) -> str:
    """What the span says, in a few words: a message, a tool call, a tool result or error, labels (``marks``
    when given: every failure at the span, else the worst one its attributes carry)."""
    parts: list[str] = []
    if reading.kind == "user":
        text = next((m.content for m in reading.inputs if m.content), None)
        parts.append(json.dumps(_clip(text or "", width), ensure_ascii=False))
    elif reading.kind == "model":
        for message in reading.outputs:
            if message.content:
                parts.append(json.dumps(_clip(message.content, width), ensure_ascii=False))
            parts.extend("→ " + _call(c.name, c.arguments, width) for c in message.tool_calls)
    elif reading.kind == "tool":
        if reading.tool_error is not None:
            parts.append("✗ " + _clip(reading.tool_error, width))
        elif reading.tool_result is not None:
            parts.append("← " + _clip(reading.tool_result, width))
    attrs = span.attributes
    if marks:
        parts.extend(marks)
    elif sc.AGENT_EVAL_FAILURE_MODE in attrs:
        parts.append(f"[{attrs.get(sc.AGENT_EVAL_FAILURE_OUTCOME, '?')} {attrs[sc.AGENT_EVAL_FAILURE_MODE]}]")
    return "  ".join(parts)


def _root_facts(span: SpanRecord) -> str:
    a = span.attributes
    facts = []
    if a.get(sc.GEN_AI_CONVERSATION_ID):
        facts.append(f"conversation={a[sc.GEN_AI_CONVERSATION_ID]}")
    if sc.AGENT_EVAL_SOURCE_FILE in a:
        facts.append(f"source={a[sc.AGENT_EVAL_SOURCE_FILE]}#{a.get(sc.AGENT_EVAL_SOURCE_INDEX, '?')}")
    if sc.AGENT_EVAL_TRACE_OUTCOME in a:
        facts.append(f"outcome={a[sc.AGENT_EVAL_TRACE_OUTCOME]}")
    return "  ".join(facts)


def render_trace(
    spans: Sequence[SpanRecord],
    *,
    width: int = 100,
    steps: Mapping[str, Sequence[int]] | None = None,
    marks: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One trace's spans as a tree (children in start order; spans whose parent is missing are roots, and so is
    the first span of a cycle of parent links: :func:`~.ingest.spans.span_parents`).

    ``steps``: the step numbers of each span id (as the evaluator numbered them: :func:`step_numbers`), shown
    as ``[n]`` instead of the span's own ``agent_eval.step.index``; ``marks``: the failure labels of each span id,
    shown instead of those its attributes carry."""
    ordered = sorted(spans, key=lambda s: (s.start_time_ns, s.end_time_ns))
    parents = span_parents(ordered)
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for span in ordered:
        parent = parents.get(span.span_id)
        children[parent if parent in parents and parent != span.span_id else None].append(span)
    start = min(s.start_time_ns for s in spans)
    end = max(s.end_time_ns for s in spans)
    lines: list[str] = []
    shown: set[str] = set()
    steps, marks = steps or {}, marks or {}
    for root in children[None]:
        facts = "  ".join(x for x in (_root_facts(root), *marks.get(root.span_id, ())) if x)
        lines.append(
            f"trace {root.trace_id}  {_label(root, steps)}  {facts + '  ' if facts else ''}"
            f"({len(spans)} spans, {(end - start) / 1e6:.1f} ms)"
        )
        _render_children(root.span_id, children, "", lines, width, shown, steps, marks)
    return "\n".join(lines)


def _label(span: SpanRecord, steps: Mapping[str, Sequence[int]]) -> str:
    """The span's name, after its step number(s): the evaluator's, else the span's own step index."""
    numbers = steps.get(span.span_id)
    index = ",".join(map(str, numbers)) if numbers else span.attributes.get(sc.AGENT_EVAL_STEP_INDEX)
    return f"[{index}] {span.name}" if index is not None else span.name


def _render_children(
    parent: str,
    children: Mapping[str | None, list[SpanRecord]],
    prefix: str,
    lines: list[str],
    width: int,
    shown: set[str],
    steps: Mapping[str, Sequence[int]],
    marks: Mapping[str, Sequence[str]],
) -> None:
    """The spans under ``parent``, depth first, without recursion (a chain of spans may be as long as a trace).
    The children of a span id are shown once (``shown``): under the first of two spans that share the id."""
    if parent in shown:
        return
    shown.add(parent)
    kids = children.get(parent, [])
    stack = [(kid, prefix, i == len(kids) - 1) for i, kid in reversed(list(enumerate(kids)))]
    while stack:
        span, prefix, last = stack.pop()
        label = _label(span, steps)
        text = describe(span, read_span(span), width, marks.get(span.span_id, ()))
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label}{'  ' + text if text else ''}")
        if span.span_id in shown:
            continue
        shown.add(span.span_id)
        kids = children.get(span.span_id, [])
        inner = prefix + ("    " if last else "│   ")
        stack.extend((kid, inner, i == len(kids) - 1) for i, kid in reversed(list(enumerate(kids))))


def step_numbers(spans: Sequence[SpanRecord]) -> dict[str, list[int]]:
    """The step numbers of each span id, as the evaluator gives them (the runs read from the spans, so a trace
    of another instrumentation, whose spans carry no ``agent_eval.step.index``, is numbered as its critiques
    are). A model span whose prompt brought new messages holds their steps too: it is numbered by its answer,
    the step it is, and by the others only when it has no answer."""
    kinds = {s.span_id: _STEP_KIND.get(read_span(s).kind) for s in spans}
    numbers: dict[str, list[int]] = {}
    for run in trace_to_runs(spans):
        held: dict[str, list[tuple[bool, int]]] = defaultdict(list)
        for step in run.steps:
            if step.span_id:
                held[step.span_id].append((step.kind == kinds.get(step.span_id), step.index))
        for span_id, found in held.items():
            own = [index for is_own, index in found if is_own] or [index for _, index in found]
            numbers.setdefault(span_id, sorted(set(own)))
    return numbers


_STEP_KIND = {"model": "assistant", "tool": "tool", "user": "user"}
