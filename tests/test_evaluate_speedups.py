"""The detectors' faster forms agree with the plain ones they replace: regexes rewritten so the regex engine can
skip to candidate positions, and per-run lookups answered from an index instead of a scan."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_agent_eval.evaluate import text

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
