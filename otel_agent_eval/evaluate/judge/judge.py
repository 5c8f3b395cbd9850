"""``LLMJudge``: an evaluator (the one interface, ``evaluate(run, context)``) that asks an evaluation model.

For each mode family (``prompts``) the judge sends the run, rendered within a token budget, and takes the
answer's findings once they pass every check (``answer``): a malformed answer is asked again once, saying what
was wrong, then recorded as an ``evaluator_error`` finding; an endpoint that cannot answer (timeouts, 5xx
after retries) leaves an ``evaluator_error`` too, and the detectors' verdict stands. Findings carry
``evaluator = "judge:<model>"``, ``evidence_kind = "judge"`` and the prompt that made them in their evidence.

Answers are cached by the hash of what was asked (model, prompt, messages): a run judged again (a retried
trace, an evaluation repeated offline) costs no call. Every call, token, error and cache hit is reported to
``on_event``, for metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from ...model import AgentRun
from ..engine import RunContext
from ..findings import Finding
from .answer import BadAnswer, JudgedFinding, answer_schema, parse_answer
from .client import ChatClient, ChatReply, JudgeUnavailable
from .prompts import FAMILIES, PROMPTS, Prompt

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeEvent:
    """One thing the judge did, for metrics: ``kind`` is ``call`` (an answer came), ``error`` (``reason``:
    timeout, connection, rate_limited, server_error, refused, bad_response, bad_answer), ``cache_hit``."""

    kind: str
    family: str
    reason: str = ""
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Cache:
    """Answers by the hash of their question, the newest ``size`` kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, list[JudgedFinding]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> list[JudgedFinding] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, value: list[JudgedFinding]) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class LLMJudge:
    """An evaluation model behind an OpenAI-compatible endpoint, as an evaluator.

    >>> judge = LLMJudge(ChatClient("http://127.0.0.1:9/v1", "selene-mini", retries=0, timeout=0.2))
    >>> judge.name
    'judge:selene-mini'
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        families: Sequence[str] = FAMILIES,
        budget_tokens: int = 6000,
        max_answer_tokens: int = 1024,
        concurrency: int = 4,
        cache_size: int = 1024,
        run_timeout: float | None = 60.0,
        on_event: Callable[[JudgeEvent], None] = lambda event: None,
    ) -> None:
        unknown = [f for f in families if f not in PROMPTS]
        if unknown:
            raise ValueError(f"judge families {unknown}: none of {list(PROMPTS)}")
        self.client = client
        self.name = f"judge:{client.model}"
        self.families = tuple(families)
        self.budget_tokens = budget_tokens
        self.max_answer_tokens = max_answer_tokens
        self.run_timeout = run_timeout
        self.on_event = on_event
        self._slots = threading.BoundedSemaphore(concurrency)
        self._cache = _Cache(cache_size)

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        """The judge's findings on ``run``, every family asked within ``run_timeout`` seconds in all."""
        deadline = None if self.run_timeout is None else time.monotonic() + self.run_timeout
        return self.judge(run, context, deadline=deadline)

    def judge(self, run: AgentRun, context: RunContext, *, deadline: float | None) -> Iterator[Finding]:
        """The judge's findings on ``run``, no call or wait past ``deadline`` (a ``time.monotonic()`` time)."""
        if not run.steps:
            return
        for family in self.families:
            yield from self.judge_family(run, context, PROMPTS[family], deadline=deadline)

    def judge_family(
        self, run: AgentRun, context: RunContext, prompt: Prompt, *, deadline: float | None = None
    ) -> Iterator[Finding]:
        """The judge's findings of one family on ``run`` (an ``evaluator_error`` finding when it has none to
        give). ``deadline``: a ``time.monotonic()`` time no call or wait goes past."""
        last = run.steps[-1].index
        try:
            judged = self._ask(run, prompt, deadline)
        except JudgeUnavailable as exc:
            self.on_event(JudgeEvent("error", prompt.family, exc.reason))
            yield context.finding(
                self.name,
                "evaluator_error",
                last,
                "No critique: the judge could not be asked about this run.",
                f"{prompt.name}: {exc}",
                confidence=1.0,
            )
            return
        except Exception as exc:  # anything else the endpoint's answer provokes: never a crash of the caller
            if not isinstance(exc, BadAnswer):
                logger.warning("the judge failed on a run (%s)", type(exc).__name__, exc_info=True)
            self.on_event(JudgeEvent("error", prompt.family, "bad_answer"))
            yield context.finding(
                self.name,
                "evaluator_error",
                last,
                "No critique: the judge's answer could not be used, twice.",
                f"{prompt.name}: {exc}",
                confidence=1.0,
            )
            return
        for item in judged:
            finding = context.finding(
                self.name,
                item.mode,
                item.step,
                item.critique,
                f"{item.evidence} ({prompt.name})" if item.evidence else f"({prompt.name})",
                confidence=item.confidence,
                recovered=item.outcome == "recovered",
            )
            yield _as_judged(finding)

    def _ask(self, run: AgentRun, prompt: Prompt, deadline: float | None) -> list[JudgedFinding]:
        system, user = prompt.messages(run, budget_tokens=self.budget_tokens)
        schema = answer_schema(prompt.modes)
        key = hashlib.sha256(
            json.dumps([self.client.model, prompt.name, system, user], sort_keys=True).encode()
        ).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            self.on_event(JudgeEvent("cache_hit", prompt.family))
            return cached
        steps = {s.index for s in run.steps}
        messages = [system, user]
        reply = self._call(messages, schema, prompt, deadline)
        try:
            judged = parse_answer(reply.content, schema, steps=steps)
        except BadAnswer as exc:
            # Once more, saying what was wrong: a model that slipped once usually answers well when told.
            messages += [{"role": "assistant", "content": reply.content[:4000]}, prompt.retry(run, str(exc))]
            reply = self._call(messages, schema, prompt, deadline)
            judged = parse_answer(reply.content, schema, steps=steps)
        self._cache.put(key, judged)
        return judged

    def _call(
        self, messages: list[dict[str, str]], schema: dict[str, object], prompt: Prompt, deadline: float | None
    ) -> ChatReply:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        # At most `concurrency` calls at once, whoever makes them (pipeline workers, the guard).
        if not self._slots.acquire(timeout=remaining):
            raise JudgeUnavailable("timeout", "every judge call slot stayed busy until the time ran out")
        try:
            reply = self.client.complete(messages, schema=schema, max_tokens=self.max_answer_tokens, deadline=deadline)
        finally:
            self._slots.release()
        self.on_event(
            JudgeEvent("call", prompt.family, "", reply.seconds, reply.prompt_tokens, reply.completion_tokens)
        )
        return reply


def _as_judged(finding: Finding) -> Finding:
    return replace(finding, evidence_kind="judge")
