"""Conditions over a call's arguments and its target's state, for policy-pack preconditions.

A path is dotted keys, with ``[*]`` to take a field from every element of a list:

>>> get_path({"flights": [{"flight_number": "HAT1"}, {"flight_number": "HAT2"}]}, "flights[*].flight_number")
['HAT1', 'HAT2']

A condition holds or not for ``(arguments, state)``:

>>> c = Condition.from_mapping({"argument": "total_baggages", "less_than_state": "total_baggages"})
>>> c.holds({"total_baggages": 1}, {"total_baggages": 2}), c.describe({"total_baggages": 1}, {"total_baggages": 2})
(True, 'argument total_baggages (1) < state total_baggages (2)')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_MISSING = object()

# condition key -> (what it compares the path with, operator shown in evidence)
_STATE_OPS = {
    "equals_state": "==",
    "differs_from_state": "!=",
    "less_than_state": "<",
    "greater_than_state": ">",
}
CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["state"]}, {"required": ["argument"]}],
    "properties": {
        "state": {"type": "string"},
        "argument": {"type": "string"},
        "in": {"type": "array"},
        "not_in": {"type": "array"},
        **{op: {"type": "string"} for op in _STATE_OPS},
    },
    "minProperties": 2,
}


def get_path(value: Any, path: str) -> Any:
    """The value at ``path`` (``_MISSING`` when a key is absent)."""
    return _walk(value, path.split("."))


def _walk(current: Any, parts: list[str]) -> Any:
    for i, part in enumerate(parts):
        every = part.endswith("[*]")
        key = part[:-3] if every else part
        if key:
            if not isinstance(current, Mapping) or key not in current:
                return _MISSING
            current = current[key]
        if every:
            if not isinstance(current, list):
                return _MISSING
            rest = parts[i + 1 :]
            return [_walk(item, rest) if rest else item for item in current]
    return current


@dataclass(frozen=True)
class Condition:
    subject: str  # "state" or "argument"
    path: str
    op: str  # in | not_in | equals_state | differs_from_state | less_than_state | greater_than_state
    operand: Any

    @classmethod
    def from_mapping(cls, obj: Mapping[str, Any]) -> Condition:
        subject = "state" if "state" in obj else "argument"
        op = next(k for k in obj if k not in ("state", "argument"))
        return cls(subject=subject, path=str(obj[subject]), op=op, operand=obj[op])

    def _value(self, arguments: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
        return get_path(state if self.subject == "state" else arguments, self.path)

    def holds(self, arguments: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
        value = self._value(arguments, state)
        if value is _MISSING:
            return False
        if self.op == "in":
            return value in self.operand
        if self.op == "not_in":
            return value not in self.operand
        other = get_path(state, self.operand)
        if other is _MISSING:
            return False
        try:
            if self.op == "equals_state":
                return bool(value == other)
            if self.op == "differs_from_state":
                return bool(value != other)
            if self.op == "less_than_state":
                return bool(value < other)
            return bool(value > other)
        except TypeError:  # values that do not compare (a number and a text) decide nothing
            return False

    def describe(self, arguments: Mapping[str, Any], state: Mapping[str, Any]) -> str:
        value = self._value(arguments, state)
        shown = "missing" if value is _MISSING else repr(value)
        if self.op in ("in", "not_in"):
            return f"{self.subject} {self.path} ({shown}) {'in' if self.op == 'in' else 'not in'} {list(self.operand)}"
        other = get_path(state, self.operand)
        return f"{self.subject} {self.path} ({shown}) {_STATE_OPS[self.op]} state {self.operand} ({other!r})"
