"""In-loop correction: judge a step before it takes effect, and hand the critique back to the agent.

>>> from otel_agent_eval import Guard
>>> tools = [{"type": "function", "function": {"name": "cancel_order", "parameters": {
...     "type": "object", "properties": {"order_id": {"type": "string"},
...     "reason": {"enum": ["no longer needed", "ordered by mistake"]}}, "required": ["order_id", "reason"]}}}]
>>> guard = Guard(tools=tools)
>>> history = [{"role": "user", "content": "Cancel order #W1, I no longer need it."}]
>>> proposed = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
...     "function": {"name": "cancel_order", "arguments": '{"order_id": "#W1", "reason": "because"}'}}]}
>>> verdict = guard.check(history, proposed)
>>> verdict.action, verdict.findings[0].mode
('revise', 'wrong_arguments')
>>> guard.check(history, {**proposed, "tool_calls": [{"id": "c1", "type": "function", "function": {
...     "name": "cancel_order", "arguments": '{"order_id": "#W1", "reason": "no longer needed"}'}}]}).action
'allow'

The same evaluators as the processor judge the proposed step (``Engine.check``): a step is sent back for
revision when a finding about it is terminal, at least ``min_confidence`` sure, and structural or corroborated
(the rule that decides an outcome: a heuristic over words alone does not send a step back). Each verdict is an event
(``agent_eval.guard.verdict``) on the span that is current when ``check`` is called.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from opentelemetry import trace

from .. import semconv as sc
from ..evaluate import Engine, Finding, PackLibrary
from ..evaluate.engine import with_proposed
from ..evaluate.findings import corroborated
from ..evaluate.judge import LLMJudge
from ..ingest.messages import messages_to_steps, parse_openai_message, read_as_said
from ..model import AgentRun, AssistantMessage, Step, ToolDefinition

logger = logging.getLogger(__name__)

Action = Literal["allow", "revise"]


@dataclass(frozen=True)
class Verdict:
    """What the guard says of a proposed step: ``allow`` it, or send it back to ``revise`` with a critique."""

    action: Action
    findings: tuple[Finding, ...] = ()
    seconds: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def critique(self) -> str:
        """The findings' critiques, for the agent: what went wrong and what to do instead."""
        return " ".join(dict.fromkeys(f.critique for f in self.findings if f.outcome == "terminal"))


@dataclass
class Guard:
    """Checks proposed steps against the history, in process.

    ``tools`` (OpenAI function dicts or ``ToolDefinition``) and ``policy`` (the agent's written policy, its
    system instructions) are used for histories that do not carry their own.
    """

    tools: Sequence[ToolDefinition | Mapping[str, Any]] = ()
    policy: str | None = None
    engine: Engine | None = None
    min_confidence: float = 0.5
    judge: LLMJudge | None = None
    """An evaluation model asked about each proposed step after the detectors (see :mod:`..evaluate.judge`)."""
    judge_budget: float = 2.0
    """Seconds the judge may take on one check, all its calls included; past it the step is allowed."""
    judge_fail_closed: bool = False
    """A judge that cannot answer in time sends the step back (``revise``, no critique) instead of allowing it."""
    _tools: tuple[ToolDefinition, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self._tools = ToolDefinition.parse_list(list(self.tools))
        if self.engine is None:
            self.engine = Engine(packs=PackLibrary.with_builtins())

    def check(self, history: AgentRun | Sequence[Mapping[str, Any]], proposed: Step | Mapping[str, Any]) -> Verdict:
        """The verdict on ``proposed`` (a step, or an OpenAI-style assistant message) after ``history`` (a run,
        or OpenAI-style messages)."""
        started = time.perf_counter()
        run = self._run(history)
        step = proposed if not isinstance(proposed, Mapping) else self._step(proposed, len(run.steps))
        assert self.engine is not None
        findings = tuple(self.engine.check(run, step))
        unanswered: Finding | None = None
        if self.judge is not None:
            judged, unanswered = self._judged(run, step)
            findings += judged
        # The processor's rule: words alone suspect, they do not send a step back.
        blocking = [
            f
            for f in findings
            if f.counts  # the evaluator's own errors say nothing of the step
            and f.outcome == "terminal"
            and f.confidence >= self.min_confidence
            and (f.evidence_kind != "textual" or corroborated(f, findings))
        ]
        if unanswered is not None and self.judge_fail_closed:
            blocking.append(unanswered)
        verdict = Verdict("revise" if blocking else "allow", tuple(blocking), time.perf_counter() - started)
        _record(verdict)
        return verdict

    def _judged(self, history: AgentRun, proposed: Step) -> tuple[tuple[Finding, ...], Finding | None]:
        """The judge's findings about the proposed step, within ``judge_budget`` seconds, and, when it could
        not answer, a finding saying so (the step is then allowed, logged; sent back with
        ``judge_fail_closed``)."""
        assert self.judge is not None and self.engine is not None
        run, index = with_proposed(history, proposed)
        deadline = time.monotonic() + self.judge_budget
        found = list(self.judge.judge(run, self.engine.context(run, complete=False), deadline=deadline))
        errors = [f for f in found if not f.counts]
        unanswered = None
        if errors:
            logger.warning("the guard's judge gave no answer on a step: %s", errors[0].evidence[:200])
            unanswered = replace(
                errors[0], step=index, critique="The step could not be checked in time; propose it again."
            )
        return tuple(f for f in found if f.counts and f.step == index), unanswered

    def _run(self, history: AgentRun | Sequence[Mapping[str, Any]]) -> AgentRun:
        if isinstance(history, AgentRun):
            run = history
        else:
            messages = [parse_openai_message(m, field=f"history[{i}]", strict=False) for i, m in enumerate(history)]
            system, steps = messages_to_steps(messages)
            run = AgentRun(steps=tuple(steps), system_instructions=system)
        if run.system_instructions is None and self.policy is not None:
            run = replace(run, system_instructions=self.policy)
        return run.with_tools(self._tools)

    @staticmethod
    def _step(message: Mapping[str, Any], index: int) -> Step:
        """The proposed step read as the history's assistant messages are: as what it says to the user
        (``{"message": "..."}`` is its text), its reasoning kept apart from its text."""
        parsed = read_as_said(parse_openai_message({"role": "assistant", **message}, field="proposed", strict=False))
        return AssistantMessage(
            index=index, content=parsed.content, reasoning=parsed.reasoning, tool_calls=parsed.tool_calls
        )


def _record(verdict: Verdict) -> None:
    try:
        _add_verdict(verdict)
    except Exception:  # telemetry never stops the guard
        logger.warning("could not record a guard verdict", exc_info=True)


def _add_verdict(verdict: Verdict) -> None:
    """The verdict as an event on the current span (the loop shows in traces). With no span current, as in a
    loop an auto-instrumentor follows (the model call's span ended when the answer came), the event goes on a
    short span of its own, a child of that model call's span, naming it as the step judged."""
    span = trace.get_current_span()
    own = None
    if not span.is_recording():
        from ..instrument.conversation import latest_model_call

        latest = latest_model_call()
        if latest is None:
            return
        tracer, model_span = latest
        own = span = tracer.start_span(
            sc.SPAN_GUARD_VERDICT,
            context=trace.set_span_in_context(model_span),
            attributes={sc.AGENT_EVAL_GUARD_STEP_SPAN_ID: format(model_span.get_span_context().span_id, "016x")},
        )
    attributes: dict[str, Any] = {
        "agent_eval.guard.action": verdict.action,
        "agent_eval.guard.findings": len(verdict.findings),
    }
    if verdict.findings:
        attributes["agent_eval.guard.modes"] = [f.mode for f in verdict.findings]
        # The critique quotes what the agent did: content, written through the process's content policy.
        from ..instrument.content import default_policy

        critique = default_policy().text(verdict.critique)
        if critique is not None:
            attributes["agent_eval.guard.critique"] = critique
    span.add_event("agent_eval.guard.verdict", attributes)
    if own is not None:
        own.end()
