"""The cascade: detectors first, free and offline; the judge only where they cannot see, within a budget.

``--judge``:

* ``off`` (default): the detectors alone;
* ``suspicious``: runs whose calibrated failure score lies in a band (by default 0.2 to 0.8: neither
  clearly fine nor clearly failed by the detectors' account) are judged;
* ``sampled``: a share of runs, chosen by trace id (the same run is chosen again when evaluated again);
* ``all``: every run.

A budget of calls and tokens per minute (token buckets) bounds the cost: a run the budget cannot pay for
keeps the detectors' verdict, and the refusal is counted. The judge's findings join the detectors' into one
evaluation (:func:`~otel_agent_eval.evaluate.findings.combined_score`: a confident judge finding decides the
outcome as a structural one does; the score is the detectors' calibrated score noisy-or'ed with the judge's
findings).

>>> from otel_agent_eval.evaluate import Engine
>>> cascade = Cascade(Engine(), None, CascadeConfig(mode="off"))
>>> cascade.choose(0.5, "0af7651916cd43dd8448eb211c80319c") is None
True
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ...model import AgentRun
from ..engine import Engine
from ..findings import Evaluation
from .client import CHARS_PER_TOKEN
from .judge import JudgeEvent, LLMJudge

JudgeMode = Literal["off", "suspicious", "sampled", "all"]
JUDGE_MODES: tuple[JudgeMode, ...] = ("off", "suspicious", "sampled", "all")


@dataclass(frozen=True)
class CascadeConfig:
    mode: JudgeMode = "off"
    band: tuple[float, float] = (0.2, 0.8)
    """``suspicious``: the failure scores judged, inclusive."""
    sample_rate: float = 0.1
    """``sampled``: the share of runs judged."""
    calls_per_minute: float = 60.0
    tokens_per_minute: float = 200_000.0

    def __post_init__(self) -> None:
        if self.mode not in JUDGE_MODES:
            raise ValueError(f"judge mode {self.mode!r}: one of {', '.join(JUDGE_MODES)}")
        low, high = self.band
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"judge band {low}-{high}: must be 0 <= low <= high <= 1")
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"judge sample rate {self.sample_rate}: must be between 0 and 1")
        if self.calls_per_minute <= 0 or self.tokens_per_minute <= 0:
            raise ValueError("judge budget: calls and tokens per minute must be over 0")


class Budget:
    """Calls and tokens per minute, as two token buckets that refill continuously (a minute's worth at most)."""

    def __init__(self, calls_per_minute: float, tokens_per_minute: float, clock: Callable[[], float] = time.monotonic):
        self._rates = (calls_per_minute / 60.0, tokens_per_minute / 60.0)
        self._caps = (calls_per_minute, tokens_per_minute)
        self._levels = [calls_per_minute, tokens_per_minute]
        self._clock = clock
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, calls: int, tokens: int) -> bool:
        """Spend ``calls`` and ``tokens`` if both buckets hold them; otherwise spend nothing."""
        with self._lock:
            now = self._clock()
            elapsed, self._at = now - self._at, now
            for i in (0, 1):
                self._levels[i] = min(self._caps[i], self._levels[i] + elapsed * self._rates[i])
            if self._levels[0] < calls or self._levels[1] < tokens:
                return False
            self._levels[0] -= calls
            self._levels[1] -= tokens
            return True


class Cascade:
    """Detectors, then the judge where the configuration says, within the budget."""

    def __init__(
        self,
        engine: Engine,
        judge: LLMJudge | None,
        config: CascadeConfig,
        *,
        on_event: Callable[[JudgeEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.mode != "off" and judge is None:
            raise ValueError(f"judge mode {config.mode!r} needs a judge (a base URL and a model)")
        self.engine = engine
        self.judge = judge
        self.config = config
        self.on_event = on_event or (judge.on_event if judge is not None else (lambda event: None))
        self.budget = Budget(config.calls_per_minute, config.tokens_per_minute, clock)

    def choose(self, failure_score: float, trace_id: str | None) -> str | None:
        """Why a run with this detectors' score is judged (``all``, ``suspicious``, ``sampled``), or ``None``."""
        mode = self.config.mode
        if mode == "all":
            return "all"
        if mode == "suspicious":
            low, high = self.config.band
            return "suspicious" if low <= failure_score <= high else None
        if mode == "sampled":
            digest = hashlib.sha256((trace_id or "").encode()).digest()
            return "sampled" if int.from_bytes(digest[:8], "big") / 2**64 < self.config.sample_rate else None
        return None

    def reason(self, evaluation: Evaluation) -> str | None:
        """Why the judge should look at a run the detectors evaluated (``evaluation``), or ``None``."""
        return self.choose(evaluation.failure_score, _key(evaluation.run)) if self.judge is not None else None

    def wants(self, evaluation: Evaluation) -> bool:
        """Whether the judge should look at a run the detectors evaluated (``evaluation``)."""
        return self.reason(evaluation) is not None

    def judged(self, evaluation: Evaluation, *, complete: bool = True) -> Evaluation:
        """The detectors' ``evaluation`` with the judge's findings added, if the budget pays for them; the
        evaluation unchanged otherwise (the refusal counted)."""
        judge = self.judge
        if judge is None:
            return evaluation
        run = evaluation.run
        calls = len(judge.families)
        tokens = calls * (min(judge.budget_tokens, _run_tokens(run)) + judge.max_answer_tokens)
        if not self.budget.take(calls, tokens):
            self.on_event(JudgeEvent("budget_refused", ""))
            return evaluation
        context = self.engine.context(run, complete=complete)
        found = list(judge.evaluate(run, context))
        return Evaluation.of(run, [*evaluation.findings, *found], score=self.engine.score)

    def evaluate(self, run: AgentRun, *, complete: bool = True) -> Evaluation:
        """Detectors, then (if chosen) the judge: one evaluation."""
        evaluation = self.engine.evaluate(run, complete=complete)
        return self.judged(evaluation, complete=complete) if self.wants(evaluation) else evaluation


def _key(run: AgentRun) -> str:
    return run.trace_id or (run.source.id if run.source and run.source.id else "") or ""


def _run_tokens(run: AgentRun) -> int:
    """About how many tokens the run's steps make, rendered (before cutting to the budget)."""
    size = len(run.system_instructions or "")
    for step in run.steps:
        for value in (getattr(step, "content", None), getattr(step, "result", None), getattr(step, "error", None)):
            if isinstance(value, str):
                size += len(value)
    return max(1, size // CHARS_PER_TOKEN)  # estimate_tokens' rate, without building the text
