"""Tool calls checked on their own: the tool exists, the arguments fit its schema, the values are grounded."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

from ...model import AgentRun, ToolDefinition
from ..engine import RunContext
from ..facts import Call
from ..findings import Finding
from ..schemas import SchemaCheck

_checks: dict[int, tuple[ToolDefinition, SchemaCheck | None]] = {}


def _schema_check(tool: ToolDefinition) -> SchemaCheck | None:
    """A compiled check per tool definition (cached: the same definitions serve many runs)."""
    if tool.parameters is None:
        return None
    cached = _checks.get(id(tool))
    if cached is not None and cached[0] is tool:
        return cached[1]
    try:
        check: SchemaCheck | None = SchemaCheck(tool.parameters)
    except jsonschema.SchemaError:
        check = None  # a broken schema is the tool author's problem, not the agent's
    if len(_checks) > 4096:
        _checks.clear()
    _checks[id(tool)] = (tool, check)
    return check


def _fixed_later(call: Call, calls: list[Call]) -> Call | None:
    """A later call of the same tool that went through: the agent corrected itself."""
    return next((c for c in calls[call.position + 1 :] if c.name == call.name and not c.failed), None)


class SchemaDetector:
    """Tool calls against the tool definitions: unknown tools, malformed or schema-violating arguments."""

    name = "schema"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        if not run.tool_definitions:
            return
        tools = {t.name: t for t in run.tool_definitions}
        calls = context.facts.calls
        for call in calls:
            if not context.concerns(call.step):
                continue
            tool = tools.get(call.name)
            fixed = _fixed_later(call, calls)
            if tool is None:
                if context.policy.is_transfer(call.name):
                    continue
                yield context.finding(
                    self.name,
                    "wrong_tool",
                    call.step,
                    f"There is no tool named {call.name!r}: call one of the tools you were given "
                    f"({', '.join(sorted(tools)[:8])}).",
                    f"call {call.name}({call.call.arguments_json()[:200]}) names no defined tool",
                    confidence=0.9,
                    recovered=any(c.name in tools and c.position > call.position for c in calls),
                )
                continue
            if call.call.arguments is None:
                yield context.finding(
                    self.name,
                    "wrong_arguments",
                    call.step,
                    f"Your arguments for {call.name} were not valid JSON: send a JSON object that fits its schema.",
                    f"arguments text: {(call.call.raw_arguments or '')[:200]}",
                    confidence=0.95,
                    recovered=fixed is not None,
                )
                continue
            check = _schema_check(tool)
            if check is None:
                continue
            errors = list(check.errors(dict(call.call.arguments)))
            if errors:
                first = min(errors, key=lambda e: len(e.absolute_path))
                where = ".".join(str(p) for p in first.absolute_path) or "arguments"
                yield context.finding(
                    self.name,
                    "wrong_arguments",
                    call.step,
                    f"Fix the arguments of {call.name}: {where}: {first.message}.",
                    f"{len(errors)} schema error(s) in {call.name}({call.call.arguments_json()[:200]}): "
                    f"{first.message}",
                    confidence=0.9,
                    recovered=fixed is not None,
                )


# Values worth grounding: identifiers (letters and digits mixed, or with _ # @ -), e-mail addresses.
_IDENTIFIER = re.compile(r"^(?=.*\d)(?=.*[A-Za-z_#@-])[\w#@.\-:/+]{4,}$|^[\w.+-]+@[\w-]+\.[\w.]+$")

_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_SKIP_KEYS = re.compile(r"(reason|note|comment|message|summary|description|query|text|content|thought)", re.I)


_SCALARS = (str, int, float, bool, type(None))
"""The types of JSON's scalar values: neither mappings nor lists, known without asking ``Mapping``'s
``isinstance`` (an ABC check, the costly part of walking a value)."""


def _leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every scalar in ``value`` with its path (``items[0].id``), in order. Built into one list, without a
    generator per level: arguments and tool results are walked by several detectors."""
    out: list[tuple[str, Any]] = []
    _collect_leaves(value, path, out)
    return out


def _collect_leaves(value: Any, path: str, out: list[tuple[str, Any]]) -> None:
    if type(value) in _SCALARS:
        out.append((path, value))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _collect_leaves(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _collect_leaves(v, f"{path}[{i}]", out)
    else:
        out.append((path, value))


def date_spellings(value: str) -> list[str]:
    """How a user may have written an ISO date: "2024-05-20" -> "may 20", "20 may", "5/20", "05/20", ...

    >>> date_spellings("2024-05-20")[:4]
    ['2024-05-20', 'may 20', '20 may', 'may 20']
    """
    match = _ISO_DATE.match(value)
    if not match:
        return [value]
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        return [value]
    name = _MONTHS[month - 1]
    out = [value[:10], f"{name} {day}", f"{day} {name}", f"{name[:3]} {day}", f"{day} {name[:3]}"]
    out += [f"{month}/{day}", f"{month:02d}/{day:02d}", f"{day}/{month}", f"{day:02d}.{month:02d}"]
    out += [f"{name} {day:02d}", f"{year}/{month:02d}/{day:02d}"]
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    out.append(f"{day}{suffix}")
    return out


class GroundingDetector:
    """Identifiers in tool arguments that appear nowhere in what the agent was told before the call.

    An id the user never gave and no tool returned was made up (hallucinated) or garbled. Only
    identifier-like strings are checked (mixed letters and digits, e-mail addresses): free text and plain
    numbers legitimately come from the model itself.
    """

    name = "grounding"

    def evaluate(self, run: AgentRun, context: RunContext) -> Iterator[Finding]:
        facts = context.facts
        corpus = facts.corpus
        calls = facts.calls
        for call in calls:
            if not context.concerns(call.step) or call.call.arguments is None or context.policy.is_transfer(call.name):
                continue
            missing = []
            for path, value in _leaves(call.call.arguments):
                if not isinstance(value, str) or _SKIP_KEYS.search(path) or not _IDENTIFIER.match(value):
                    continue
                spellings = date_spellings(value) if _ISO_DATE.match(value) else [value, value.lstrip("#")]
                if not any(corpus.known_before(s, call.step) for s in spellings):
                    missing.append((path, value))
            if not missing:
                continue
            fixed = _fixed_later(call, calls)
            grounded_retry = fixed is not None and all(v not in fixed.call.arguments_json() for _, v in missing)
            shown = ", ".join(f"{p}={v!r}" for p, v in missing[:4])
            yield context.finding(
                self.name,
                "wrong_arguments",
                call.step,
                f"Use only identifiers the user gave or a tool returned: {shown} in your {call.name} call "
                "appeared nowhere before; look it up first.",
                f"{call.name}: {shown} not found in the policy, the user's messages or earlier tool results",
                confidence=(0.6 if call.failed else 0.5) if context.policy.is_write(call.name) else 0.3,
                recovered=grounded_retry or (call.failed and fixed is not None),
            )
