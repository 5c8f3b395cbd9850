"""Plain-text helpers shared by the detectors that read what the agent says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
# A number standing on its own: not digits inside an identifier ("W1234", "card_42", "#77", "BK-6425").
# Written as ``(?<![\w#])(?<!\w-)-?\d[\d,]*(?:\.\d+)?(?![\w-])`` would match the same, but a pattern that
# opens with a look-behind makes the regex engine try every position of the text; opening with the first
# character (``-`` or a digit) lets it skip to the candidates in C, twice as fast over JSON tool results.
# The look-behinds then check the character(s) before that first one, and a "-" must be followed by a digit.
_NUMBER = re.compile(r"[-\d](?<![\w#][-\d])(?<!\w-[-\d])(?:(?<=-)\d|(?<!-))[\d,]*(?:\.\d+)?(?![\w-])")
_CODE_DIGITS = 7
"""A bare run of this many digits or more (no separator, no decimals) is a code, not a quantity: amounts
that large are written with separators. Judged by the shape of the number, whatever the domain."""
# These patterns are lower-case and matched against lower-cased text: case-insensitive matching of long
# alternations is over twice as slow, and they run on every message of every run.
# A sentence that is conditional, hypothetical or a question does not state a fact or a commitment.
_HEDGE = re.compile(
    r"\b(if|once|when|whenever|after|before|unless|until|would you|do you|shall i|let me know|please confirm|"
    r"could you|can you|cannot|can't|not|no longer|only)\b|\?"
)
_REFUSAL = re.compile(
    r"\b(unable to|can(?:no|')t|not able to|not possible|not eligible|ineligible|against (our |the )?polic|"
    r"not allowed|not permitted|i(?:'m| am) sorry,? but|unfortunately|do not have the ability|"
    r"outside (of )?(my|the) scope|not available|no longer available|failed|error)"
)


@lru_cache(maxsize=2048)
def lowered(text: str) -> str:
    """``text.lower()``, cached. Every check of an in-loop guard and every early evaluation in the processor
    re-reads the same earlier messages and tool results; their lower-cased copies are made once."""
    return text.lower()


@lru_cache(maxsize=2048)
def refuses(text: str) -> bool:
    """Whether a message refuses, apologises for a failure, or reports one (cached, as :func:`lowered`)."""
    return _REFUSAL.search(text.lower()) is not None


def sentences(text: str) -> Iterator[str]:
    for match in _SENTENCE.finditer(text):
        sentence = match.group().strip()
        if sentence:
            yield sentence


def finditer_at(pattern: re.Pattern[str], starts: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """The matches of ``pattern.finditer(text)``, found by trying ``pattern`` only where ``starts`` matches.

    A pattern that opens with a word boundary or an alternation makes the regex engine try it at every
    position of the text; ``starts``, one character that opens with a character class, is skipped to in C.
    ``starts`` must match at every position a match of ``pattern`` can begin at, and ``pattern`` must not
    match the empty string; where ``starts`` matches and ``pattern`` does not, nothing is lost but time.

    >>> [m.group() for m in finditer_at(re.compile(r"\\b\\d+"), re.compile(r"\\d"), "a1 22 b333")]
    ['22']
    """
    end = 0
    for candidate in starts.finditer(text):
        at = candidate.start()
        if at < end:  # inside the previous match: finditer goes on from its end
            continue
        match = pattern.match(text, at)  # look-behinds and \b still see the text before ``at``
        if match is not None:
            end = match.end()
            yield match


def plain_statements(text: str, pattern: re.Pattern[str], *, needs: tuple[str, ...] = ()) -> Iterator[re.Match[str]]:
    """Matches of a lower-case ``pattern`` in the sentences of ``text`` that are not hedged (conditional,
    negated or questions). The text is lower-cased first, so the matches are lower-case too.

    ``needs``: substrings one of which every match of ``pattern`` contains. A text or sentence holding none
    of them is not searched: a substring test costs a fraction of a search by a pattern that can begin at
    any word."""
    text = lowered(text)
    if needs and not any(n in text for n in needs):
        return
    if not pattern.search(text):  # no match in the text, none in its sentences: skip the splitting
        return
    for sentence in sentences(text):
        if needs and not any(n in sentence for n in needs):
            continue
        match = pattern.search(sentence)
        # The hedge alternation is the costlier search: asked only of the few sentences that match.
        if match and not _HEDGE.search(sentence):
            yield match


@lru_cache(maxsize=256)
def numbers_in(text: str) -> tuple[float, ...]:
    """Every number in a text, as a non-negative float (cached: the same policy text heads many runs).

    >>> numbers_in("2 bags, $1,250.50 in total")
    (2.0, 1250.5)
    >>> numbers_in("booking BK-642515, item 1234567890, -3 left")
    (3.0,)
    """
    out = []
    for raw in _NUMBER.findall(text):  # no groups: the whole matches, without a Match object each
        raw = raw.lstrip("-").rstrip(",")
        if len(raw) >= _CODE_DIGITS and raw.isdigit():
            continue
        try:
            value = float(raw.replace(",", ""))
        except ValueError:
            continue
        out.append(value)
    return tuple(out)
