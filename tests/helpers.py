"""Comparing steps by what they say, not by where they were read from."""

from __future__ import annotations

from typing import Any

from otel_agent_eval.model import AgentRun, AssistantMessage, Step, ToolExecution


def step_facts(step: Step) -> tuple[Any, ...]:
    if isinstance(step, AssistantMessage):
        calls = tuple(
            (c.id, c.name, dict(c.arguments) if c.arguments is not None else c.raw_arguments) for c in step.tool_calls
        )
        return ("assistant", step.index, step.content, calls)
    if isinstance(step, ToolExecution):
        args = dict(step.arguments) if step.arguments is not None else None
        return ("tool", step.index, step.name, step.call_id, args, step.result, step.error)
    return ("user", step.index, step.content)


def run_facts(run: AgentRun) -> list[tuple[Any, ...]]:
    return [step_facts(s) for s in run.steps]
