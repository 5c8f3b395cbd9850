"""Model calls that produced nothing usable: empty answers, answers cut off or filtered."""

from __future__ import annotations

from collections.abc import Iterator

from ...model import AgentRun, AssistantMessage
from ..engine import RunContext
from ..findings import Finding

_BAD_FINISH = {"length": "was cut off at the output-token limit", "content_filter": "was blocked by a content filter"}


class ModelOutputDetector:
    """An assistant turn with neither text nor tool calls, or one that stopped for a reason other than its own."""

    name = "model_output"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        steps = run.steps
        # The position of the last assistant turn with text or a tool call: a failed turn before it was
        # followed by a usable one (one pass over the run, not one per turn).
        last_ok = max(
            (
                i
                for i, s in enumerate(steps)
                if isinstance(s, AssistantMessage) and (s.tool_calls or (s.content or "").strip())
            ),
            default=-1,
        )
        for i, step in enumerate(steps):
            if not isinstance(step, AssistantMessage) or not context.concerns(step.index):
                continue
            later_ok = last_ok > i
            if not step.tool_calls and not (step.content or "").strip():
                yield context.finding(
                    self.name,
                    "model_failure",
                    step.index,
                    "Your reply was empty: answer the user or call a tool.",
                    "an assistant turn with no text and no tool call",
                    confidence=0.5,
                    recovered=later_ok,
                )
            elif step.finish_reason in _BAD_FINISH:
                yield context.finding(
                    self.name,
                    "model_failure",
                    step.index,
                    "Your reply was incomplete: keep answers short enough to finish.",
                    f"the model's output {_BAD_FINISH[step.finish_reason]} (finish_reason={step.finish_reason})",
                    confidence=0.5,
                    recovered=later_ok,
                )
