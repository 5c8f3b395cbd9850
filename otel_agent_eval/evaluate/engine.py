"""The one evaluator interface, and the engine that runs evaluators over a run.

An evaluator is any object with a ``name`` and an ``evaluate(run, context)`` method returning findings.
The same call serves every caller:

* offline files and the collector-side processor evaluate a complete run (``complete=True``);
* a streaming evaluator evaluates the prefix seen so far (``complete=False``: detectors that need the end of
  the run, such as "ended with requested actions not done", stay quiet);
* the in-loop hook evaluates the history plus a proposed next step (:meth:`Engine.check`).

Evaluators are plugins: besides the built-in detectors, every entry point in the group
``otel_agent_eval.evaluators`` is loaded (an evaluator object, or a class or factory called with no
arguments). A plugin's ``pyproject.toml``::

    [project.entry-points."otel_agent_eval.evaluators"]
    refunds = "my_package.evaluators:RefundRules"

>>> from otel_agent_eval.model import AgentRun, UserMessage, AssistantMessage
>>> engine = Engine()
>>> run = AgentRun(steps=(UserMessage(index=0, content="hi"), AssistantMessage(index=1, content="Hello!")))
>>> engine.evaluate(run).outcome
'success'
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..model import AgentRun, Step
from .facts import RunFacts
from .findings import Evaluation, FailureOutcome, Finding, ScoreFunction
from .policy import PackLibrary, ResolvedPolicy

if TYPE_CHECKING:
    from .calibration import Calibration

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "otel_agent_eval.evaluators"

Focus = int | Iterable[int] | None
"""The steps whose findings are wanted: one step, several, or (``None``) all."""


@dataclass
class RunContext:
    """What an evaluator gets besides the run: the policy that applies, whether the run is over, shared facts."""

    run: AgentRun
    policy: ResolvedPolicy
    complete: bool = True
    focus: frozenset[int] | None = None
    """Only findings at these steps are wanted (an in-loop check of a proposed step; an early look at the
    steps new since the last one): detectors may skip the per-step work for other steps, and the engine
    drops findings at other steps. ``None``: every step."""

    def concerns(self, step: int) -> bool:
        """Whether findings at ``step`` are wanted."""
        return self.focus is None or step in self.focus

    @cached_property
    def focus_steps(self) -> tuple[Step, ...] | None:
        """The steps in ``focus`` (``None`` without a focus): detectors that judge only some kinds of step can
        return at once when none of them is one."""
        if self.focus is None:
            return None
        return tuple(s for s in self.run.steps if s.index in self.focus)

    @property
    def focus_step(self) -> Step | None:
        """The one step in focus, for evaluators written when a focus was one step (an in-loop check); ``None``
        without a focus or with several steps in it (prefer :attr:`focus_steps` and :meth:`concerns`)."""
        steps = self.focus_steps
        return steps[0] if steps is not None and len(steps) == 1 else None

    def focus_is(self, kind: type[Step]) -> bool:
        """Whether findings at a step of ``kind`` may be wanted (always, without a focus)."""
        return self.focus_steps is None or any(isinstance(s, kind) for s in self.focus_steps)

    @cached_property
    def facts(self) -> RunFacts:
        return RunFacts(self.run, self.policy)

    def finding(
        self,
        evaluator: str,
        mode: str,
        step: int,
        critique: str,
        evidence: str,
        *,
        confidence: float,
        recovered: bool = False,
        textual: bool = False,
        targets: Iterable[str] = (),
    ) -> Finding:
        """A finding at step ``step``, with that step's span id. ``textual``: it rests on natural language
        read by a heuristic (see :data:`~otel_agent_eval.evaluate.findings.EvidenceKind`); ``targets``: the
        identifiers (and ``"step:N"`` pointers) it is about, for corroboration."""
        outcome: FailureOutcome = "recovered" if recovered else "terminal"
        return Finding(
            mode=mode,
            step=step,
            outcome=outcome,
            critique=critique,
            evidence=evidence,
            evaluator=evaluator,
            confidence=confidence,
            span_id=self.span_id(step),
            evidence_kind="textual" if textual else "structural",
            targets=tuple(dict.fromkeys(targets)),
        )

    def span_id(self, index: int) -> str | None:
        for step in self.run.steps:
            if step.index == index:
                return step.span_id
        return None


@runtime_checkable
class Evaluator(Protocol):
    """Anything that reads a run and says what failed."""

    name: str

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterable[Finding]: ...


def builtin_evaluators() -> list[Evaluator]:
    """The reference-free detectors that ship with otel-agent-eval."""
    from .detectors import BUILTIN_DETECTORS

    return [cls() for cls in BUILTIN_DETECTORS]


def plugin_evaluators(exclude: Iterable[str] = ()) -> list[Evaluator]:
    """Evaluators registered by installed packages under the ``otel_agent_eval.evaluators`` entry points."""
    skip = set(exclude)
    found: list[Evaluator] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in skip:
            continue
        try:
            obj: Any = ep.load()
            evaluator = obj if isinstance(obj, Evaluator) else obj()
        except Exception:
            logger.exception("cannot load evaluator plugin %r (%s)", ep.name, ep.value)
            continue
        if not isinstance(evaluator, Evaluator):
            logger.error("evaluator plugin %r (%s) has no name or evaluate()", ep.name, ep.value)
            continue
        found.append(evaluator)
    return found


class Engine:
    """Runs evaluators over runs, isolating each: one that raises becomes an ``evaluator_error`` finding."""

    def __init__(
        self,
        evaluators: Sequence[Evaluator] | None = None,
        *,
        packs: PackLibrary | None = None,
        plugins: bool = True,
        score: ScoreFunction | None = None,
        calibration: Calibration | Literal["builtin"] | None = "builtin",
    ) -> None:
        if calibration == "builtin":
            # The shipped calibration was fitted on the built-in detectors: it is theirs, not a custom set's.
            from .calibration import default_calibration

            calibration = default_calibration() if evaluators is None else None
        if evaluators is None:
            evaluators = builtin_evaluators()
            if plugins:
                evaluators = [*evaluators, *plugin_evaluators(exclude=(e.name for e in evaluators))]
        self.evaluators = list(evaluators)
        self.packs = packs or PackLibrary.with_builtins()
        self.calibration: Calibration | None = calibration
        """Its combiner is the default ``score``, and (when it says ``confidences: measured``) its measured
        precisions replace the detectors' confidences (see :mod:`otel_agent_eval.evaluate.calibration`).
        By default, with the built-in detectors, the shipped one; ``None``: the detectors' own, noisy-or."""
        self.score = score if score is not None or calibration is None else calibration.score
        """How findings become ``failure_score`` (a calibration's combiner; ``None``: the noisy-or)."""

    def context(self, run: AgentRun, *, complete: bool = True, focus: Focus = None) -> RunContext:
        policy = self.packs.policy_for(run.system_instructions).for_tools(run.tool_definitions)
        steps = frozenset([focus]) if isinstance(focus, int) else None if focus is None else frozenset(focus)
        return RunContext(run=run, policy=policy, complete=complete, focus=steps)

    def findings(self, run: AgentRun, *, complete: bool = True, focus: Focus = None) -> list[Finding]:
        """The findings on ``run`` (``focus``: only those at this step, or these steps)."""
        context = self.context(run, complete=complete, focus=focus)
        out: list[Finding] = []
        for evaluator in self.evaluators:
            try:
                out.extend(evaluator.evaluate(run, context))
            except Exception as exc:  # one broken evaluator must not silence the others
                logger.debug("evaluator %s raised", evaluator.name, exc_info=True)
                last = run.steps[-1].index if run.steps else 0
                out.append(
                    context.finding(
                        evaluator.name,
                        "evaluator_error",
                        last,
                        "No critique: the evaluator failed on this run.",
                        f"{type(exc).__name__}: {exc}",
                        confidence=1.0,
                    )
                )
        if context.focus is not None:
            out = [f for f in out if f.step in context.focus]
        return self.calibration.apply(out) if self.calibration is not None else out

    def evaluate(self, run: AgentRun, *, complete: bool = True, focus: Focus = None) -> Evaluation:
        """Evaluate a run (or, with ``complete=False``, the prefix of one that is still going; with ``focus``,
        only its findings at these steps: the verdict of an early look at the steps new since the last)."""
        return Evaluation.of(run, self.findings(run, complete=complete, focus=focus), score=self.score)

    def check(self, history: AgentRun, proposed: Step) -> list[Finding]:
        """The findings about ``proposed``, the step the agent is about to take after ``history``."""
        run, index = with_proposed(history, proposed)
        return self.findings(run, complete=False, focus=index)


def with_proposed(history: AgentRun, proposed: Step) -> tuple[AgentRun, int]:
    """The run as it would be with ``proposed`` taken after ``history``, and the index of that step (after the
    history's last, whatever index the step came with)."""
    last = history.steps[-1].index if history.steps else -1
    index = proposed.index if proposed.index > last else last + 1
    return replace(history, steps=(*history.steps, replace(proposed, index=index))), index
