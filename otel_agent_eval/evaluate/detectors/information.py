"""What the agent tells the user, checked against what it was told: amounts, identifiers, success claims."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from ...model import AgentRun, AssistantMessage, ToolExecution, UserMessage
from ..engine import RunContext
from ..facts import Call
from ..findings import Finding
from ..text import finditer_at, numbers_in, plain_statements
from .arguments import _leaves

# Money: "$1,234.50", "1234.50 USD", "USD 12". Plain integers are left alone (counts, years, list numbers).
_AMOUNT = re.compile(
    r"(?:[$€£]\s?(\d[\d,]*(?:\.\d+)?))|(?:\b(\d[\d,]*\.\d{2})\b)|(?:\b(\d[\d,]*(?:\.\d+)?)\s?(?:usd|dollars|eur|euros)\b)",
    re.IGNORECASE,
)
# Where an amount can begin: a currency sign, or a digit not preceded by a word character (the ``\b`` of
# the other two forms). One character opening with a class: the regex engine skips to it in C.
_AMOUNT_START = re.compile(r"[$€£\d](?<!\w\d)")
_DIGIT = re.compile(r"\d")
# Identifiers the agent quotes: mixed letters and digits (order #W123, HAT001, credit_card_12), e-mails.
_IDENT = re.compile(
    r"\b[\w.+-]+@[\w-]+\.[\w.]+\b|#?\b(?=[A-Za-z_-]*\d)(?=[\d-]*[A-Za-z_])(?=[A-Za-z0-9_-]{5,})[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*\b"
)
# The same without the e-mail alternative, for text with no "@": trying it at every word is the costly part.
_IDENT_NO_EMAIL = re.compile(
    r"#?\b(?=[A-Za-z_-]*\d)(?=[\d-]*[A-Za-z_])(?=[A-Za-z0-9_-]{5,})[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*\b"
)
# A sentence that states an action as done, and the verb of that action (any verb: which tool carries it is
# read from the run's tools, see evaluate/actions.py). Matched against lower-cased, unhedged sentences.
_DONE = re.compile(
    r"\b(?:has|have|had) (?:now |also |just )?been (?:successfully |now |also )?([a-z]{3,})\b|"
    r"\b(?:i|we) (?:have|'ve) (?:now |just |also |successfully )*([a-z]{3,}ed)\b|"
    r"\b(?:is|are) now ([a-z]{3,}ed)\b|"
    r"\bsuccessfully ([a-z]{3,}ed)\b|\b([a-z]{3,}ed) successfully\b"
)
# Every form of _DONE holds one of these ("been", "have" or "'ve", "now", "successfully"): a message or a
# sentence with none of them states nothing done and is not searched (its last form can begin at any word).
# Keep them in step with _DONE: tests/test_evaluate_speedups.py checks them against its forms.
_DONE_NEEDS = ("been ", "ve ", "now ", "successfully")
_CORRECTION = re.compile(
    r"\b(correction|i made a mistake|i apologi[sz]e for the (error|confusion|mistake)|my mistake|"
    r"let me correct|i misspoke)\b",
    re.IGNORECASE,
)


def _cents(value: float) -> int:
    return round(value * 100)


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


class _Numbers:
    """Numbers known before each step, and what simple arithmetic over them reaches.

    Amounts are checked in step order, so the known numbers grow as the run goes: each source is added once.
    """

    def __init__(self, run: AgentRun) -> None:
        # Texts first; their numbers are parsed only when an amount at a later step needs them.
        self.sources: list[tuple[int, str]] = []
        if run.system_instructions:
            self.sources.append((-1, run.system_instructions))
        for step in run.steps:
            if isinstance(step, UserMessage) and step.content:
                self.sources.append((step.index, step.content))
            elif isinstance(step, ToolExecution) and step.result:
                self.sources.append((step.index, step.result))
        self._added = 0
        self.known: set[int] = set()  # in cents
        self.totals: set[int] = set()
        self._pairs: set[int] | None = None
        self._answers: dict[int, bool] = {}

    def _advance(self, before: int) -> None:
        while self._added < len(self.sources) and self.sources[self._added][0] < before:
            numbers = numbers_in(self.sources[self._added][1])
            self.known.update([round(n * 100) for n in numbers])  # _cents, inlined: a result holds hundreds
            if 1 < len(numbers) <= 200:  # a result's total (an order's items, a bill)
                self.totals.add(_cents(sum(numbers)))
            self._added += 1
            self._pairs = None
            self._answers.clear()

    def supported(self, value: float, before: int) -> bool:
        self._advance(before)
        v = _cents(value)
        answer = self._answers.get(v)
        if answer is None:
            answer = self._answers[v] = self._reachable(v)
        return answer

    def _reachable(self, v: int) -> bool:
        """Whether ``v`` (in cents) is a known number, a result's total, a sum or difference of two known
        numbers, a small multiple of one, or (over the smaller sets) a sum of three. Whole cents keep the
        arithmetic exact and the three-sum table cheap to build."""
        known = self.known
        if v in known or v in self.totals:
            return True
        for x in known:
            if v - x in known or x - v in known:  # a sum or a difference of two
                return True
            if x:
                k, rest = divmod(v, x)
                if 2 <= k <= 10 and rest == 0:  # a small multiple (per person, per unit)
                    return True
        if len(known) <= 120:  # sums of three, over the smaller number sets only
            if self._pairs is None:
                ordered = sorted(known)
                self._pairs = {x + y for i, x in enumerate(ordered) for y in ordered[i:]}
            pairs = self._pairs
            return any(v - x in pairs for x in known)
        return False


class WrongInformationDetector:
    """Amounts and identifiers no tool result or user message supports; success claims without a successful write."""

    name = "information"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        if not context.focus_is(AssistantMessage):
            return
        facts = context.facts
        numbers: _Numbers | None = None
        corpus = facts.corpus
        steps = run.steps
        corrections: list[int] | None = None

        def corrected_after(index: int) -> bool:
            """Whether the agent corrected itself later (worked out once, when first needed)."""
            nonlocal corrections
            if corrections is None:
                corrections = [
                    s.index
                    for s in steps
                    if isinstance(s, AssistantMessage) and s.content and _CORRECTION.search(s.content)
                ]
            return any(c > index for c in corrections)

        for step in steps:
            if not isinstance(step, AssistantMessage) or not step.content or not context.concerns(step.index):
                continue
            text = step.content
            unsupported = []
            has_digit = _DIGIT.search(text) is not None
            for match in finditer_at(_AMOUNT, _AMOUNT_START, text) if has_digit else ():
                if numbers is None:
                    numbers = _Numbers(run)
                raw = next(g for g in match.groups() if g)
                value = _to_float(raw)
                if value is not None and value > 0 and not numbers.supported(value, step.index):
                    unsupported.append(match.group().strip())
            if unsupported:
                yield context.finding(
                    self.name,
                    "wrong_information",
                    step.index,
                    f"Quote only amounts that a tool returned or that follow from them: "
                    f"{', '.join(unsupported[:3])} is supported by nothing the tools or the user said.",
                    f"amount(s) {', '.join(unsupported[:5])} not found in, nor computable from, earlier tool results "
                    "and user messages",
                    confidence=0.55,
                    recovered=corrected_after(step.index),
                    textual=True,
                )
            invented = [
                m.group()
                for m in ((_IDENT if "@" in text else _IDENT_NO_EMAIL).finditer(text) if has_digit else ())
                if not corpus.known_before(m.group().lstrip("#"), step.index)
            ]
            if invented:
                yield context.finding(
                    self.name,
                    "wrong_information",
                    step.index,
                    f"Do not state identifiers you were not given: {', '.join(invented[:3])} came from no tool "
                    "result or user message.",
                    f"identifier(s) {', '.join(invented[:5])} appear in no earlier tool result or user message",
                    confidence=0.45,
                    recovered=corrected_after(step.index),
                    textual=True,
                )
            for claim in plain_statements(text, _DONE, needs=_DONE_NEEDS):
                verb = next(g for g in claim.groups() if g)
                found = self._check_claim(context, step, claim.string, verb, corrected_after)
                if found is not None:
                    yield found
                    break

    def _check_claim(
        self,
        context: RunContext,
        step: AssistantMessage,
        sentence: str,
        verb: str,
        corrected_after: Callable[[int], bool],
    ) -> Finding | None:
        """A sentence saying ``verb`` was done, against the calls of the tools that carry ``verb``
        (``corrected_after`` is asked only for a finding: most claims are of a write that went through).

        Structural when the tool results contradict it (every such call failed); textual when no such call
        was made at all, or none on the thing the sentence names.
        """
        facts = context.facts
        tools = facts.writes_carrying(verb)
        if not tools:
            return None  # no tool of this agent carries that action: nothing to check it against
        calls = [c for c in facts.calls if c.name in tools and c.step < step.index]
        named = {m.group().lstrip("#") for m in _IDENT_NO_EMAIL.finditer(sentence)}
        relevant = [c for c in calls if named & call_targets(c)] if named else calls
        if any(c.succeeded or c.execution is None for c in relevant):
            return None
        kinds = "/".join(sorted(tools))
        if relevant:
            last = relevant[-1]
            error = (last.execution.error if last.execution else "") or ""
            return context.finding(
                self.name,
                "wrong_information",
                step.index,
                "Do not tell the user an action succeeded when its tool call failed; say what actually happened.",
                f"{sentence.strip()[:160]!r}, but {last.name} at step {last.step} failed: {error[:120]}",
                confidence=0.7,
                recovered=corrected_after(step.index),
                targets=[f"step:{c.step}" for c in relevant] + sorted(named),
            )
        elsewhere = [c for c in calls if c.succeeded]
        evidence = (
            f"{sentence.strip()[:160]!r}, but no {kinds} call was made before it"
            if not elsewhere
            else f"{sentence.strip()[:160]!r}, but the {kinds} calls before it were on other targets "
            f"than {', '.join(sorted(named)[:3])}"
        )
        return context.finding(
            self.name,
            "wrong_information",
            step.index,
            "Do not tell the user an action was done unless a tool call for it returned success; say what "
            "actually happened.",
            evidence,
            confidence=0.6,
            recovered=corrected_after(step.index),
            textual=True,
            targets=sorted(named),
        )


def call_targets(call: Call) -> set[str]:
    """The identifier-like string values among a call's arguments (what it acts on), lower-cased."""
    return {
        v.lstrip("#").lower()
        for _, v in _leaves(call.call.arguments or {})
        if isinstance(v, str) and _IDENT_NO_EMAIL.fullmatch(v) is not None
    }
