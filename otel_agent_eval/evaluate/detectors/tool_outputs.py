"""Steps that contradict the tool results before them: acting on what a result said is unavailable."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from ...model import AgentRun, ToolExecution
from ..engine import RunContext
from ..facts import NOT_JSON, decoded_json
from ..findings import Finding
from .arguments import _leaves

# Statuses that, on an object a tool returned, mean "cannot be had or acted on".
_UNAVAILABLE = {"unavailable", "not available", "sold out", "sold_out", "out of stock", "out_of_stock"}
_MAY_SAY_UNAVAILABLE = re.compile(r"false|unavailable|not available|sold.out|out.of.stock")


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for v in value.values():
            yield from _objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from _objects(v)


def _unavailable(obj: Mapping[str, Any]) -> str | None:
    if obj.get("available") is False:
        return "available: false"
    status = obj.get("status")
    if isinstance(status, str) and status.strip().lower() in _UNAVAILABLE:
        return f"status: {status}"
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
    """Whether the object is the thing ``value`` identifies (an id-like field holding it)."""
    return any(v == value and (k.endswith("id") or k.endswith("_number") or k == "sku") for k, v in obj.items())


# Arguments that name what a call acquires (not what it gives up): "new_item_ids", or every argument of a
# call that books or buys. The item being exchanged away may well be unavailable by now.
_ACQUIRES = re.compile(r"^(book|buy|purchase|order|reserve|add|create)(_|$)", re.IGNORECASE)


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
        for call in acting:
            assert call.call.arguments is not None
            acquires_all = _ACQUIRES.search(call.name) is not None
            values = {
                v
                for path, v in _leaves(call.call.arguments)
                if isinstance(v, str) and len(v) >= 3 and (acquires_all or "new" in path.lower())
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
