"""Plain-text helpers shared by the detectors that read what the agent says."""

from __future__ import annotations

import re
from collections.abc import Iterator

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
# A sentence that is conditional, hypothetical or a question does not state a fact or a commitment.
HEDGE = re.compile(
    r"\b(if|once|when|whenever|after|before|unless|until|would you|do you|shall i|let me know|please confirm|"
    r"could you|can you|cannot|can't|not|no longer|only)\b|\?",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"\b(unable to|can(?:no|')t|not able to|not possible|not eligible|ineligible|against (our |the )?polic|"
    r"not allowed|not permitted|i(?:'m| am) sorry,? but|unfortunately|do not have the ability|"
    r"outside (of )?(my|the) scope|not available|no longer available|failed|error)",
    re.IGNORECASE,
)


def sentences(text: str) -> Iterator[str]:
    for match in _SENTENCE.finditer(text):
        sentence = match.group().strip()
        if sentence:
            yield sentence


def plain_statements(text: str, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """Matches of ``pattern`` in sentences that are not hedged (conditional, negated or questions)."""
    if not pattern.search(text):  # no match in the text, none in its sentences: skip the splitting
        return
    for sentence in sentences(text):
        if HEDGE.search(sentence):
            continue
        match = pattern.search(sentence)
        if match:
            yield match
