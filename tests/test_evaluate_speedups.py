"""The detectors' faster forms agree with the plain ones they replace: regexes rewritten so the regex engine can
skip to candidate positions, and per-run lookups answered from an index instead of a scan."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_agent_eval.evaluate import PackLibrary, actions, text
from otel_agent_eval.evaluate.detectors import completion, information, tool_outputs
from otel_agent_eval.evaluate.detectors.arguments import _leaves
from otel_agent_eval.evaluate.facts import Corpus, RunFacts
from otel_agent_eval.model import AgentRun, ToolDefinition, UserMessage

# Texts over the characters the patterns turn on (signs, separators, "#", word and non-word characters, a
# non-ASCII digit and letter, a newline), so that short random strings hit every boundary case.
_ALPHABET = "-#_,.@$€£ \n1907aZk٣é"
_texts = st.text(alphabet=_ALPHABET, max_size=24)

_NUMBER_AS_WRITTEN = re.compile(r"(?<![\w#])(?<!\w-)-?\d[\d,]*(?:\.\d+)?(?![\w-])")


def _spans(pattern: re.Pattern[str], value: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(value)]


@settings(max_examples=3000, deadline=None)
@given(_texts)
def test_number_pattern_matches_as_written(value: str) -> None:
    assert _spans(text._NUMBER, value) == _spans(_NUMBER_AS_WRITTEN, value)


# --- the corpus remembers where each value first occurs -------------------------------------------------------

_sources = st.lists(
    st.tuples(st.integers(min_value=-1, max_value=6), st.text(alphabet="abAB1-\n", max_size=8)), max_size=6
).map(lambda items: sorted(items, key=lambda item: item[0]))


_asks = st.lists(st.tuples(st.text(alphabet="abAB1-", min_size=1, max_size=3), st.integers(-2, 8)), max_size=12)


@settings(max_examples=500, deadline=None)
@given(_sources, _asks)
def test_corpus_answers_as_a_bounded_search(sources: list[tuple[int, str]], asks: list[tuple[str, int]]) -> None:
    corpus = Corpus(sources)
    for value, index in asks:  # repeated values, in any order of steps: the remembered position serves all
        before = [i for i, _ in enumerate(sources) if sources[i][0] < index]
        end = corpus._ends[before[-1]] if before else 0
        assert corpus.known_before(value, index) == (end > 0 and corpus.text.find(value.lower(), 0, end) >= 0)
        at = corpus.text.find(value.lower())
        seen = None if at < 0 else corpus._indices[bisect_left(corpus._ends, at + 1)]
        assert corpus.first_seen(value) == seen


# --- walking decoded values --------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=12,
)


def _leaves_as_written(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves_as_written(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves_as_written(v, f"{path}[{i}]")
    else:
        yield path, value


def _objects_as_written(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for v in value.values():
            yield from _objects_as_written(v)
    elif isinstance(value, list):
        for v in value:
            yield from _objects_as_written(v)


@settings(max_examples=500, deadline=None)
@given(_json)
def test_walks_match_the_recursive_generators(value: Any) -> None:
    assert _leaves(value) == list(_leaves_as_written(value))
    assert [id(o) for o in tool_outputs._objects(value)] == [id(o) for o in _objects_as_written(value)]


# --- patterns tried only where a match can begin --------------------------------------------------------------

_amount_texts = st.lists(
    st.sampled_from(["$", "€", "£", "1", "20", ".", ",", " ", "usd", "USD", "dollars", "eur", "ſ", "a", "_", "٣"]),
    max_size=12,
).map("".join)


@settings(max_examples=3000, deadline=None)
@given(_amount_texts)
def test_amounts_found_at_their_starts_are_finditer_s(value: str) -> None:
    found = text.finditer_at(information._AMOUNT, information._AMOUNT_START, value)
    expected = information._AMOUNT.finditer(value)
    assert [(m.span(), m.groups()) for m in found] == [(m.span(), m.groups()) for m in expected]


_PROMISE_AS_WRITTEN = re.compile(
    r"\b(?:i will|i'll|let me|i am going to|i'm going to)\s+(?:now\s+)?(?:go ahead and\s+)?"
    r"(?:proceed (?:to|with)\s+)?([a-z]{3,})\b",
)
_promise_texts = st.lists(
    st.sampled_from(
        ["i", "l", "let", " me", "'ll", " will", " am going to", "'m going to", " ", "\n", "now", "go ahead and",
         "proceed to", " with", "cancel", "ab", "_", "1", "é", "x", ".", "ı", "İ"]
    ),
    max_size=10,
).map("".join)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(_promise_texts)
def test_promise_pattern_matches_as_written(value: str) -> None:
    found = [(m.span(), m.group(1)) for m in completion._PROMISE.finditer(value)]
    assert found == [(m.span(), m.group(1)) for m in _PROMISE_AS_WRITTEN.finditer(value)]


# --- what is remembered across runs ---------------------------------------------------------------------------


def test_tool_verbs_remember_each_verb_and_hand_out_their_own_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    tools = actions.ToolVerbs.of(["cancel_pending_order", "get_order_details", "exchangeItems"], {})
    first = tools.carrying("cancelled")
    assert first == {"cancel_pending_order"}
    first.add("mutated")  # a caller's set is its own: the remembered answer stays
    assert tools.carrying("cancelled") == {"cancel_pending_order"}
    monkeypatch.setattr(actions, "_CARRYING_KEPT", 2)
    for verb in ("exchanged", "found", "cancelling", "exchange"):
        tools.carrying(verb)
        assert len(tools._carrying) <= 2  # bounded
    assert tools.carrying("exchanged") == {"exchangeItems"} and tools.carrying("found") == set()


def test_runs_with_the_same_tools_share_their_verbs() -> None:
    run = AgentRun(
        steps=(UserMessage(index=0, content="please cancel it"),),
        tool_definitions=(ToolDefinition(name="cancel_order", description="Cancel an order"),),
    )
    policy = PackLibrary.with_builtins(()).policy_for(None).for_tools(run.tool_definitions)
    a, b = RunFacts(run, policy), RunFacts(replace(run), policy)
    assert a.tool_verbs is b.tool_verbs
    other = replace(run, tool_definitions=(ToolDefinition(name="cancel_order", description="Void an order"),))
    assert RunFacts(other, policy).tool_verbs.verbs == {"cancel_order": ("cancel", "void")}
    assert a.tool_verbs.verbs == {"cancel_order": ("cancel",)}


_claim_texts = st.lists(
    st.sampled_from(
        ["has", "have", "had", "i", "we", "'ve", "is", "are", "now", "also", "just", "been", "successfully",
         "cancelled", "done", "x1", "."]
    ),
    max_size=8,
).map(" ".join)  # fmt: skip


@settings(max_examples=5000, deadline=None)
@given(_claim_texts)
def test_every_claim_holds_one_of_the_words_it_needs(value: str) -> None:
    match = information._DONE.search(value)
    assert match is None or any(n in match.group() for n in information._DONE_NEEDS)
