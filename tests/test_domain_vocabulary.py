"""No detector holds a word of the development data's domains.

What a detector matches (its regular expressions, the sets and strings it compares with) is read from the
source, and checked against the vocabulary of the development data's tools: every word of their names,
parameter names and enum values. The few words that are plain English any tool-using agent shares (``user``,
``name``, ``id``) are allowed by name, each for a reason. A detector that needs to know what a tool does
reads it from the tool's definition or a pack (``evaluate/actions.py``, ``evaluate/policy.py``).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

from conftest import DATA, ROOT

DETECTORS = sorted((ROOT / "otel_agent_eval" / "evaluate" / "detectors").glob("*.py")) + [
    ROOT / "otel_agent_eval" / "evaluate" / name for name in ("text.py", "facts.py", "actions.py")
]
# Plain English of every tool-using conversation, not of a domain.
GENERIC = {
    "user": "the other party of every conversation",
    "name": "what a tool and a person have",
    "new": "asking for a new value is not asking again",
    "number": "plain English",
    "first": "plain English",
    "one": "plain English",
    "all": "plain English",
    "type": "plain English",
    "state": "what a tool result shows",
    "status": "what a tool result shows",
    "total": "a sum",
    "amount": "money moved by a call, in any domain",
    "human": "hand-offs to a person, in any domain",
    "transfer": "hand-offs, in any domain",
    "available": "availability, in any domain",
    "details": "plain English",
    "reason": "free-text argument names are not identifiers",
    "summary": "free-text argument names are not identifiers",
    "thought": "free-text argument names are not identifiers",
    "description": "free-text argument names are not identifiers",
    "message": "free-text argument names are not identifiers",
    "yes": "a confirmation",
    "list": "plain English",
}


def _vocabulary() -> set[str]:
    words: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                words.update(re.findall(r"[a-z]{3,}", str(key).lower()))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and " " not in value and len(value) < 40:
            words.update(re.findall(r"[a-z]{3,}", value.lower()))

    for path in sorted((DATA / "tau-bench").glob("*-tools.json")):
        for tool in json.loads(path.read_text(encoding="utf-8")):
            fn = tool.get("function", tool)
            words.update(re.findall(r"[a-z]{3,}", fn["name"].lower()))
            walk(fn.get("parameters", {}))
    return words - set(GENERIC)


def _matched_literals(path: Path) -> Iterator[tuple[int, str]]:
    """The strings a module matches with: arguments of ``re.compile``/``re.search``, and string constants
    inside sets, tuples, dicts, comparisons and ``in`` tests (not docstrings, critiques or evidence)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("compile", "search", "match"):
            for arg in node.args[:1]:
                for sub in ast.walk(arg):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        yield sub.lineno, sub.value
        elif isinstance(node, (ast.Set, ast.Tuple, ast.Dict, ast.Compare)):
            for sub in ast.iter_child_nodes(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value
            if isinstance(node, ast.Dict):
                for key in node.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        yield key.lineno, key.value


def test_the_vocabulary_is_read_from_the_data() -> None:
    vocabulary = _vocabulary()
    assert {"reservation", "order", "flight", "baggages", "passengers", "zip", "email"} <= vocabulary


def test_no_detector_matches_a_word_of_the_development_domains() -> None:
    vocabulary = _vocabulary()
    found = [
        f"{path.relative_to(ROOT)}:{line}: {word!r} in {text[:80]!r}"
        for path in DETECTORS
        for line, text in _matched_literals(path)
        for word in sorted(set(re.findall(r"[a-z]{3,}", text.lower())) & vocabulary)
    ]
    assert not found, "domain words in detectors:\n" + "\n".join(found)
