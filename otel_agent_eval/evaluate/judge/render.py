"""A run written compactly for a judge: every step on its own numbered line, within a token budget.

Steps carry the numbers the results use (``step.index``), so a judge's "step 7" is the evaluation's step 7.
Tool calls are written as calls (``get_order(order_id="#W1")``), tool results as their JSON text. A run over
its budget is cut where it costs least: the longest texts first (tool results, then messages), each cut in
the middle with a marker that says how much was left out, never a step left out.

>>> from otel_agent_eval.model import AgentRun, AssistantMessage, ToolCall, ToolExecution, UserMessage
>>> run = AgentRun(steps=(
...     UserMessage(index=0, content="Cancel order #W1."),
...     AssistantMessage(index=1, tool_calls=(ToolCall(id="c1", name="cancel_order", arguments={"id": "#W1"}),)),
...     ToolExecution(index=2, name="cancel_order", call_id="c1", arguments={"id": "#W1"},
...                   result='{"status": "x' + "y" * 400 + '"}'),
...     AssistantMessage(index=3, content="Done: order #W1 is cancelled."),
... ))
>>> print(render_steps(run, budget_tokens=60))
[0] user: Cancel order #W1.
[1] assistant calls: cancel_order({"id": "#W1"})
[2] tool cancel_order result: {"status": "xyyyyyyyyyyyyyyyyyy[… 353 characters cut …]yyyyyyyyyyyyyyyyyyyyyyyyyyyyy"}
[3] assistant: Done: order #W1 is cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ...model import AgentRun, AssistantMessage, Step, ToolDefinition, ToolExecution, UserMessage
from .client import CHARS_PER_TOKEN, estimate_tokens

MIN_KEPT = 48
"""Characters a cut text keeps at least (both ends together): enough to recognise what it was."""


@dataclass
class _Line:
    head: str
    text: str
    cuttable: int
    """How eagerly it is cut: 2 tool results, 1 messages and arguments, 0 never (the head)."""

    def render(self) -> str:
        return f"{self.head}{self.text}"


def _args(arguments: object) -> str:
    return json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str)


def _lines(steps: Iterable[Step]) -> list[_Line]:
    lines: list[_Line] = []
    for step in steps:
        n = f"[{step.index}] "
        if isinstance(step, UserMessage):
            lines.append(_Line(f"{n}user: ", step.content or "", 1))
        elif isinstance(step, AssistantMessage):
            if step.content:
                lines.append(_Line(f"{n}assistant: ", step.content, 1))
            if step.tool_calls:
                calls = "; ".join(f"{c.name}({c.arguments_json()})" for c in step.tool_calls)
                head = f"{n}assistant calls: " if not step.content else f"{' ' * len(n)}and calls: "
                lines.append(_Line(head, calls, 1))
            if not step.content and not step.tool_calls:
                lines.append(_Line(f"{n}assistant: ", "(nothing)", 0))
        elif isinstance(step, ToolExecution):
            by = " (run by the user)" if step.requested_by == "user" else ""
            if step.error is not None:
                lines.append(_Line(f"{n}tool {step.name}{by} error: ", step.error, 2))
            else:
                lines.append(_Line(f"{n}tool {step.name}{by} result: ", step.result or "", 2))
    return lines


def _cut(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    keep = max(keep, MIN_KEPT)
    head, tail = keep // 2, keep - keep // 2
    return f"{text[:head]}[… {len(text) - keep} characters cut …]{text[-tail:]}"


def _cap(lengths: list[int], excess: int) -> int | None:
    """The largest length cap that, applied to every text longer than it, removes ``excess`` characters
    (a cut text keeps ``MIN_KEPT`` at least and gains a marker of about ``_MARKER``); ``None``: none can."""
    ordered = sorted(lengths, reverse=True)
    lo, hi = MIN_KEPT, ordered[0] if ordered else MIN_KEPT
    if sum(max(0, n - lo - _MARKER) for n in ordered) < excess:
        return None
    while lo < hi:  # the largest cap still removing enough
        mid = (lo + hi + 1) // 2
        if sum(max(0, n - mid - _MARKER) for n in ordered if n > mid) >= excess:
            lo = mid
        else:
            hi = mid - 1
    return lo


_MARKER = len("[… 0000 characters cut …]")


def render_steps(run: AgentRun, *, budget_tokens: int, steps: Iterable[Step] | None = None) -> str:
    """The run's steps (or ``steps``), one numbered line each, cut to fit ``budget_tokens`` where possible:
    tool results first, every one longer than a common length cut to it, then messages the same way."""
    lines = _lines(run.steps if steps is None else steps)
    budget = budget_tokens * CHARS_PER_TOKEN  # characters
    total = sum(len(line.render()) + 1 for line in lines)
    for level in (2, 1):
        if total <= budget:
            break
        candidates = [line for line in lines if line.cuttable == level]
        cap = _cap([len(line.text) for line in candidates], total - budget)
        if cap is None:
            cap = MIN_KEPT  # even cut to the bone they are over: cut them all, then the next level
        for line in candidates:
            if len(line.text) > cap + _MARKER:
                before = len(line.text)
                line.text = _cut(line.text, cap)
                total -= before - len(line.text)
    return "\n".join(line.render() for line in lines)


def render_tools(tools: Iterable[ToolDefinition], *, budget_tokens: int) -> str:
    """The tools the agent had, one line each: name, description, parameters (cut to the budget)."""
    out = []
    for tool in tools:
        params = _args((tool.parameters or {}).get("properties", {})) if tool.parameters else "{}"
        out.append(f"- {tool.name}: {(tool.description or '').strip()} parameters: {params}")
    text = "\n".join(out)
    if estimate_tokens(text) > budget_tokens:
        text = _cut(text, budget_tokens * CHARS_PER_TOKEN)
    return text
