"""Tolerant readers of scalar values from files and span attributes: a value of the wrong type is ``None``.

>>> as_int(3.0), as_int(float("nan")), as_int(True), as_float("0.5"), as_float("high"), as_bool("false")
(3, None, None, 0.5, None, False)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def as_int(value: object) -> int | None:
    """An integer, or a float with an integral value; a bool is not a number here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def as_float(value: object) -> float | None:
    """A finite number, or the text of one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def as_bool(value: object) -> bool | None:
    """A bool, or the text ``true`` / ``false`` (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def as_str(value: object) -> str | None:
    """A non-empty string."""
    return value if isinstance(value, str) and value else None


def as_object(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (for optional parts of a file)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> Sequence[Any]:
    """``value`` if it is a list, else an empty one (for optional parts of a file)."""
    return value if isinstance(value, (list, tuple)) else ()
