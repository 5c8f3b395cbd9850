"""The judge's answer: its JSON schema, and the checks an answer must pass before its findings are taken.

The schema is sent with the request (``response_format``) and checked again here (jsonschema): many servers
do not enforce it. Beyond the schema, every finding must name a mode of the family asked about and a step
the run has; an answer that fails any check is not taken in part, it is asked again once (saying what was
wrong), then recorded as an ``evaluator_error``.

>>> schema = answer_schema(["loop", "wrong_action"])
>>> [found] = parse_answer('{"findings": [{"step": 3, "mode": "loop", "outcome": "terminal",'
...                       ' "critique": "Stop.", "evidence": "step 3 repeats step 1", "confidence": 0.7}]}',
...                       schema, steps={1, 3})
>>> found.step, found.mode, found.confidence
(3, 'loop', 0.7)
>>> parse_answer('{"findings": [{"step": 9, "mode": "loop", "outcome": "terminal", "critique": "x",'
...              ' "evidence": "", "confidence": 0.7}]}', schema, steps={1, 3})
Traceback (most recent call last):
...
otel_agent_eval.evaluate.judge.answer.BadAnswer: findings[0].step: 9 is not a step of the conversation
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema


class BadAnswer(ValueError):
    """An answer that cannot be used; the message says why (it is sent back to the judge when asking again)."""


@dataclass(frozen=True)
class JudgedFinding:
    step: int
    mode: str
    outcome: Literal["terminal", "recovered"]
    critique: str
    evidence: str
    confidence: float


def answer_schema(modes: Iterable[str]) -> dict[str, Any]:
    """The JSON schema of an answer about these modes."""
    return {
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "maxItems": 20,
                "items": {
                    "type": "object",
                    "properties": {
                        "step": {"type": "integer"},
                        "mode": {"type": "string", "enum": sorted(modes)},
                        "outcome": {"type": "string", "enum": ["terminal", "recovered"]},
                        "critique": {"type": "string", "minLength": 1, "maxLength": 2000},
                        "evidence": {"type": "string", "maxLength": 4000},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "required": ["step", "mode", "outcome", "critique", "confidence"],
                },
            }
        },
        "required": ["findings"],
    }


class _Constant(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """NaN and Infinity: Python's JSON reads them, JSON does not have them (a NaN confidence passes every
    range check and then makes the failure score NaN)."""
    raise _Constant(name)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    return path or "the answer"


def parse_answer(text: str, schema: Mapping[str, Any], *, steps: Set[int]) -> list[JudgedFinding]:
    """The findings of an answer, or :class:`BadAnswer` naming the first thing wrong with it."""
    fenced = _FENCE.match(text)  # a model that wraps its JSON in a Markdown fence despite being told not to
    try:
        data = json.loads(fenced.group(1) if fenced else text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BadAnswer(f"not JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:  # nested past Python's limit: no answer is shaped like that
        raise BadAnswer("not JSON (nested too deep)") from None
    except _Constant as exc:
        raise BadAnswer(f"{exc} is not a number JSON allows") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
        raise BadAnswer(f"{_where(error)}: {message}")
    out = []
    for i, item in enumerate(data["findings"]):
        if item["step"] not in steps:
            raise BadAnswer(f"findings[{i}].step: {item['step']} is not a step of the conversation")
        out.append(
            JudgedFinding(
                step=int(item["step"]),
                mode=str(item["mode"]),
                outcome="recovered" if item["outcome"] == "recovered" else "terminal",
                critique=str(item["critique"]).strip() or "(no critique given)",
                evidence=str(item.get("evidence", "")).strip(),
                confidence=float(item["confidence"]),
            )
        )
    return out
