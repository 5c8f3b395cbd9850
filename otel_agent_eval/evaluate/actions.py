"""Which of a run's tools carry the action a sentence names, read from the tools themselves.

A claim ("your booking has been voided"), a promise ("I'll void it now") or a request ("please void my
booking") names an action with a verb. Which tool carries that action is not looked up in a word list of
any domain: the verb is matched against the words of the run's own tool names (``void_booking``,
``voidBooking``) and the first word of each tool's description. So an agent whose tools are called
``revoke_grant`` is judged by the same code as one whose tools are called ``cancel_order``.

>>> tools = ToolVerbs.of(["cancel_pending_order", "get_order_details", "exchangeItems"], {})
>>> sorted(tools.carrying("cancelled")), sorted(tools.carrying("exchanged")), sorted(tools.carrying("found"))
(['cancel_pending_order'], ['exchangeItems'], [])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

_SPLIT = re.compile(r"[_\-\s./:]+|(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[a-z]+")
_MIN_SHARED = 4
"""Letters a verb and a tool word must share at their start (``exchang`` ~ ``exchange``)."""


@lru_cache(maxsize=4096)
def stem(word: str) -> str:
    """A crude English stem, enough to meet a tool-name verb: ``cancelled`` -> ``cancel``, ``modified`` ->
    ``modif``, ``updating`` -> ``updat``.

    >>> [stem(w) for w in ("cancelled", "modified", "updating", "books", "submitted", "return")]
    ['cancel', 'modif', 'updat', 'book', 'submit', 'return']
    """
    w = word.lower()
    for suffix in ("ied", "ies", "ing", "ed", "es", "s", "e", "y"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]  # submitt -> submit, stopp -> stop (but not "cancell": see below)
    elif len(w) >= 5 and w[-1] == w[-2] == "l":
        w = w[:-1]  # cancell -> cancel
    return w


@lru_cache(maxsize=8192)
def same_verb(a: str, b: str) -> bool:
    """Whether two words are the same verb, as far as their stems show (cached: every word of every user
    message is met with the verbs of every tool, and the same words and tools come back run after run).

    >>> same_verb("exchanged", "exchange"), same_verb("reservation", "reserve"), same_verb("modified", "modify")
    (True, False, True)
    >>> same_verb("active", "activate"), same_verb("cancelled", "cancel")
    (False, True)
    """
    sa, sb = stem(a), stem(b)
    if sa == sb:
        return True
    shared = 0
    for x, y in zip(sa, sb, strict=False):
        if x != y:
            break
        shared += 1
    # The whole shorter stem shared, and at most one letter more to the longer one: "reserve" meets
    # "reserved", not the noun "reservation"; "activate" does not meet the adjective "active".
    return shared >= _MIN_SHARED and shared == min(len(sa), len(sb)) and abs(len(sa) - len(sb)) <= 1


def name_words(name: str) -> list[str]:
    """The words of a tool name: ``get_order_details`` / ``getOrderDetails`` -> get, order, details."""
    return list(_name_words(name))


@lru_cache(maxsize=4096)
def _name_words(name: str) -> tuple[str, ...]:
    """:func:`name_words`, cached (a tuple, so that no caller can change the cached value): the same tool
    and argument names come with every run of an agent."""
    return tuple(w.lower() for w in _SPLIT.split(name) if w and _WORD.fullmatch(w.lower()))


@dataclass(frozen=True)
class ToolVerbs:
    """For each tool of a run, the verbs that name its action: the first word of its name and of its
    description."""

    verbs: Mapping[str, tuple[str, ...]]
    _carrying: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False, compare=False)
    """:meth:`carrying` remembered per verb (at most :data:`_CARRYING_KEPT`): one ``ToolVerbs`` serves every
    run with the same tools (see ``facts._tool_verbs``), and their users' words come back run after run."""

    @classmethod
    def of(cls, names: Iterable[str], descriptions: Mapping[str, str | None]) -> ToolVerbs:
        out: dict[str, tuple[str, ...]] = {}
        for name in names:
            words = name_words(name)
            verbs = [words[0]] if words else []
            description = descriptions.get(name) or ""
            first = _WORD.search(description.lower())
            if first and first.group() not in verbs:
                verbs.append(first.group())
            out[name] = tuple(verbs)
        return cls(out)

    def carrying(self, verb: str) -> set[str]:
        """The tools whose action ``verb`` names."""
        if len(verb) < 3:
            return set()
        found = self._carrying.get(verb)
        if found is None:
            if len(self._carrying) >= _CARRYING_KEPT:
                self._carrying.clear()
            found = self._carrying[verb] = frozenset(
                name for name, verbs in self.verbs.items() if any(same_verb(verb, v) for v in verbs)
            )
        return set(found)  # a set of its own for the caller, as before


_CARRYING_KEPT = 512  # per ToolVerbs; with 256 of them cached, 128k entries at most (a multi-tenant serve)
