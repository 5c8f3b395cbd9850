"""Steps that contradict the tool results before them: acting on what a result said is unavailable."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from ...model import AgentRun, ToolExecution
from ..engine import RunContext
from ..facts import NOT_JSON, decoded_json, is_identifier_key
from ..findings import Finding
from .arguments import _SCALARS, _leaves

# How a tool result says that a thing cannot be had: plain English availability words on the object (a
# boolean flag, or a status), the same for every domain.
_UNAVAILABLE = {"unavailable", "not available", "sold out", "sold_out", "out of stock", "out_of_stock"}
_FLAG = re.compile(r"^(is_)?(available|in_stock|bookable|purchasable|orderable)$", re.IGNORECASE)
_STATUS = re.compile(r"^(status|state|availability)$", re.IGNORECASE)
_MAY_SAY_UNAVAILABLE = re.compile(r"false|unavailable|not available|sold.out|out.of.stock")


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """Every object in a decoded value, outer before inner, in order (one list, no generator per level)."""
    out: list[Mapping[str, Any]] = []
    _collect_objects(value, out)
    return out


def _collect_objects(value: Any, out: list[Mapping[str, Any]]) -> None:
    if type(value) in _SCALARS:  # most values: known not to be containers without an ABC check
        return
    if isinstance(value, Mapping):
        out.append(value)
        for v in value.values():
            _collect_objects(v, out)
    elif isinstance(value, list):
        for v in value:
            _collect_objects(v, out)


def _unavailable(obj: Mapping[str, Any]) -> str | None:
    for key, value in obj.items():
        if value is False and _FLAG.match(key):
            return f"{key}: false"
        if isinstance(value, str) and _STATUS.match(key) and value.strip().lower() in _UNAVAILABLE:
            return f"{key}: {value}"
    return None


@lru_cache(maxsize=1024)
def _unavailable_in(text: str) -> tuple[tuple[Mapping[str, Any], str], ...]:
    """The objects of a tool result that show as unavailable, and why. Cached by the result's text: a loop's
    checks see the same results again and again. Only results whose text can say so are decoded and walked."""
    if not _MAY_SAY_UNAVAILABLE.search(text.lower()):
        return ()
    value = decoded_json(text)
    if value is NOT_JSON:
        return ()
    return tuple((obj, reason) for obj in _objects(value) if (reason := _unavailable(obj)) is not None)


def _names(obj: Mapping[str, Any], value: str) -> bool:
    """Whether the object is the thing ``value`` identifies: one of its own fields holds it."""
    return any(v == value for v in obj.values())


def _target(arguments: Mapping[str, Any]) -> str | None:
    """What a call acts on: its first top-level identifier argument (``*_id``), when it has one."""
    return next((v for k, v in arguments.items() if isinstance(v, str) and is_identifier_key(k)), None)


def _held(results: Mapping[int, Any], target: str, before: int, walked: dict[int, list[Mapping[str, Any]]]) -> set[str]:
    """Every value in the latest result object about ``target`` before step ``before``: what the target
    already holds (the things a call gives up, as opposed to the things it acquires). ``walked``: each
    result's objects (:func:`_objects`) by step, filled as needed and kept for the run's next calls."""
    latest: Mapping[str, Any] | None = None
    for index, value in results.items():
        if index >= before:
            break
        objects = walked.get(index)
        if objects is None:
            objects = walked[index] = _objects(value)
        for obj in objects:
            # ``in`` over the values first (in C): most objects do not hold the target at all.
            if target in obj.values() and any(v == target and is_identifier_key(k) for k, v in obj.items()):
                latest = obj
    # Only the latest object counts: its leaves are read once, not for every earlier one about the target.
    return {str(v) for _, v in _leaves(latest) if isinstance(v, str)} if latest is not None else set()


class MisreadOutputDetector:
    """A state change acquiring an item a previous tool result showed as unavailable."""

    name = "misread"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        facts = context.facts
        # A write that went through, or one still to run (a proposed step in the loop: it is judged before
        # it runs); a refused one is the tool-error detector's.
        acting = [c for c in facts.writes if not c.failed and c.call.arguments is not None and context.concerns(c.step)]
        if not acting:
            return
        # What the tools showed as unavailable: (step, object, why).
        unavailable = [
            (step.index, obj, reason)
            for step in run.steps
            if isinstance(step, ToolExecution) and step.result and step.result[:1] in "{["
            for obj, reason in _unavailable_in(step.result)
        ]
        if not unavailable:
            return
        walked: dict[int, list[Mapping[str, Any]]] = {}  # each result walked once, for every call
        for call in acting:
            assert call.call.arguments is not None
            target = _target(call.call.arguments)
            # What the call acquires: every value it names that its target does not already hold (an item
            # being exchanged away may well be unavailable by now). Read from the results, not from words.
            held = _held(facts.results_json, target, call.step, walked) if target is not None else set()
            values = {
                v
                for _, v in _leaves(call.call.arguments)
                if isinstance(v, str) and len(v) >= 3 and v != target and v not in held
            }
            for step_index, obj, reason in unavailable:
                if step_index >= call.step:
                    break
                hit = next((v for v in values if _names(obj, v)), None)
                if hit is None:
                    continue
                yield context.finding(
                    self.name,
                    "misread_output",
                    call.step,
                    f"Read the tool result before acting: {hit} was shown as unavailable, so choose "
                    "an available one or tell the user.",
                    f"{call.name} used {hit!r}, which the result at step {step_index} showed with {reason}",
                    confidence=0.7,
                )
                values.discard(hit)
