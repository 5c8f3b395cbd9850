"""Policy packs: an agent's operating rules, declared in a YAML file, so a team writes its own without code.

A pack says which tools change state, which check identity, which hand off to a human, and which rules the
agent's written policy sets. The evaluator picks, for each run, the pack whose ``match`` patterns fit the
run's system instructions (its policy), preferring the highest ``priority``; the built-in ``generic`` pack
is the fallback, with tool roles guessed from tool names and each rule turned on only when the policy text
states it. The format is documented in ``docs/policy-packs.md`` and checked against
:data:`PACK_SCHEMA` on load.

>>> pack = PolicyPack.from_mapping({"name": "shop", "tools": {"writes": {"names": ["cancel_order"]}},
...                                 "rules": {"confirm_before_write": {"enabled": True}}})
>>> policy = pack.resolve("Always confirm before cancelling.")
>>> policy.is_write("cancel_order"), policy.is_write("get_order"), policy.confirm_before_write
(True, False, True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import InputError
from ..ingest.jsonfile import read_text
from ..model import ToolDefinition
from .conditions import CONDITION_SCHEMA, Condition
from .schemas import SchemaCheck

_ROLE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "names": {"type": "array", "items": {"type": "string"}},
        "patterns": {"type": "array", "items": {"type": "string", "format": "regex"}},
    },
}
_SWITCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean"},
        "when_policy_matches": {"type": "string"},
        "critique": {"type": "string"},
        "confirmations": {"type": "array", "items": {"type": "string"}},
    },
}
PACK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "otel-agent-eval policy pack",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "extends": {"type": "string"},
        "priority": {"type": "integer"},
        "match": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "all": {"type": "array", "items": {"type": "string"}},
                "any": {"type": "array", "items": {"type": "string"}},
            },
        },
        "tools": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: _ROLE for k in ("writes", "reads", "identity", "transfer", "inert", "account")},
        },
        "rules": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "identity_before_access": _SWITCH,
                "confirm_before_write": _SWITCH,
                "one_tool_call_per_turn": _SWITCH,
                "no_message_with_tool_call": _SWITCH,
                "preconditions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["tools", "target"],
                        "anyOf": [{"required": ["field"]}, {"required": ["when"]}],
                        "properties": {
                            "tools": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            "target": {"type": "string"},
                            "source": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "tools": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                    "id_field": {"type": "string"},
                                },
                            },
                            "field": {"type": "string"},
                            "allowed": {"type": "array"},
                            "forbidden": {"type": "array"},
                            "when": {"type": "array", "items": CONDITION_SCHEMA, "minItems": 1},
                            "critique": {"type": "string"},
                        },
                    },
                },
                "argument_rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["tools", "schema"],
                        "properties": {
                            "tools": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            "schema": {"type": "object"},
                            "mode": {"enum": ["policy_violation", "wrong_arguments", "wrong_action"]},
                            "critique": {"type": "string"},
                        },
                    },
                },
                "once_per_target": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["tools", "target"],
                        "properties": {
                            "tools": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            "target": {"type": "string"},
                            "when_policy_matches": {"type": "string"},
                            "critique": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(PACK_SCHEMA)

DEFAULT_CONFIRMATIONS = (
    r"\b(yes|yeah|yep|yup|sure|ok|okay|correct|confirm(ed)?|proceed|go ahead|please do|do it|that'?s right|"
    r"sounds good|affirmative|absolutely|definitely|of course|right)\b",
)


@dataclass(frozen=True)
class ToolRole:
    names: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    _known: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def __contains__(self, tool: str) -> bool:
        # Asked for every call by several detectors: the answer per tool name is remembered. Patterns are
        # written for snake_case and also match the same name written in camelCase or with hyphens.
        known = self._known.get(tool)
        if known is None:
            snake = snake_case(tool)
            known = self._known[tool] = tool in self.names or any(
                p.search(tool) or p.search(snake) for p in self.patterns
            )
        return known

    @classmethod
    def from_mapping(cls, obj: Mapping[str, Any] | None) -> ToolRole:
        obj = obj or {}
        return cls(
            names=frozenset(obj.get("names", ())),
            patterns=tuple(re.compile(p, re.IGNORECASE) for p in obj.get("patterns", ())),
        )


@dataclass(frozen=True)
class Precondition:
    """A write forbidden by its target's state, as the latest tool result about the target shows it.

    Forbidden when ``field`` is outside ``allowed`` (or inside ``forbidden``), and every ``when`` condition
    (over the call's arguments and the state) holds; with no ``field``, when the conditions hold.
    """

    tools: frozenset[str]
    target: str
    source_tools: frozenset[str]
    id_field: str | None
    field: str | None
    allowed: tuple[Any, ...] | None
    forbidden: tuple[Any, ...]
    when: tuple[Condition, ...]
    critique: str | None


@dataclass(frozen=True)
class ArgumentRule:
    """Constraints a policy puts on a call's arguments beyond its schema (a JSON Schema of their own)."""

    tools: frozenset[str]
    check: SchemaCheck
    mode: str
    critique: str | None


@dataclass(frozen=True)
class OncePerTarget:
    tools: frozenset[str]
    target: str
    critique: str | None


@dataclass(frozen=True)
class ResolvedPolicy:
    """A pack's rules as they apply to one run (rules conditioned on the policy text already decided)."""

    pack: str
    writes: ToolRole
    identity: ToolRole
    transfer: ToolRole
    inert: ToolRole
    account: ToolRole | None
    reads: ToolRole = field(default_factory=ToolRole)
    identity_before_access: bool = False
    confirm_before_write: bool = False
    confirmations: tuple[re.Pattern[str], ...] = ()
    one_tool_call_per_turn: bool = False
    no_message_with_tool_call: bool = False
    preconditions: tuple[Precondition, ...] = ()
    argument_rules: tuple[ArgumentRule, ...] = ()
    once_per_target: tuple[OncePerTarget, ...] = ()
    critiques: Mapping[str, str] = field(default_factory=dict)

    declared_reads: frozenset[str] = frozenset()
    """Tools whose own definitions say they change nothing (MCP ``readOnlyHint: true``)."""
    declared_writes: frozenset[str] = frozenset()
    """Tools whose own definitions say they change state (``destructiveHint: true``, ``readOnlyHint: false``),
    or whose verbs do not say they only read."""
    _for_tools: dict[tuple[int, ...], tuple[tuple[ToolDefinition, ...], ResolvedPolicy]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def is_write(self, tool: str) -> bool:
        if tool in self.inert or tool in self.transfer:
            return False
        if tool in self.writes.names:  # the pack names it: the pack knows best
            return True
        if tool in self.declared_reads:
            return False
        if tool in self.declared_writes:
            return True
        return tool in self.writes and tool not in self.reads

    def for_tools(self, tools: Sequence[ToolDefinition]) -> ResolvedPolicy:
        """These rules with what the run's tool definitions say about each tool the pack does not name: its
        MCP annotations (``readOnlyHint``, ``destructiveHint``); else the leading verb of its name, then of
        its description, as the pack's ``reads`` and ``writes`` patterns know it; else, as MCP's defaults
        have it, a tool that does not say it only reads changes state.

        >>> policy = PolicyPack.from_mapping({"name": "p", "tools": {"reads": {"patterns": ["^get(_|$)"]},
        ...     "writes": {"patterns": ["^purge(_|$)"]}}}).resolve("")
        >>> tools = [ToolDefinition("purge", annotations={"destructiveHint": True}),
        ...          ToolDefinition("update_view", annotations={"readOnlyHint": True}),
        ...          ToolDefinition("flux_capacitor", "Get the flux level."),
        ...          ToolDefinition("flux_capacitor_2", "Flux the capacitor.")]
        >>> [policy.for_tools(tools).is_write(t.name) for t in tools]
        [True, False, False, True]
        """
        key = tuple(id(t) for t in tools)
        cached = self._for_tools.get(key)
        if cached is not None and all(a is b for a, b in zip(cached[0], tools, strict=True)):
            return cached[1]  # runs of one agent share their definitions: worked out once
        resolved = self._resolve_tools(tools)
        if len(self._for_tools) < 64:
            self._for_tools[key] = (tuple(tools), resolved)
        return resolved

    def _resolve_tools(self, tools: Sequence[ToolDefinition]) -> ResolvedPolicy:
        reads: set[str] = set()
        writes: set[str] = set()
        named = self.writes.names | self.inert.names | self.transfer.names | self.reads.names
        for tool in tools:
            if tool.name in named:
                continue
            notes = tool.annotations or {}
            if notes.get("readOnlyHint") is True:
                reads.add(tool.name)
                continue
            if notes.get("destructiveHint") is True or notes.get("readOnlyHint") is False:
                writes.add(tool.name)
                continue
            if tool.name in self.inert or tool.name in self.transfer or tool.name in self.identity:
                continue  # an identity check, a hand-off or a scratchpad is not a write
            verdict = self._verb_role(tool.name) or self._verb_role(_first_word(tool.description))
            (reads if verdict == "read" else writes).add(tool.name)
        if not reads and not writes:
            return self
        return replace(self, declared_reads=frozenset(reads), declared_writes=frozenset(writes), _for_tools={})

    def _verb_role(self, name: str) -> str | None:
        """``read`` or ``write`` as the leading verb of a tool name (or description word) says, or ``None``.
        Names in camelCase or with hyphens are read as snake_case; a description's "Returns" as "return"."""
        if not name:
            return None
        snake = snake_case(name)
        forms = [snake]
        head, _, rest = snake.partition("_")
        for suffix in ("es", "s"):  # third person: "retrieves", "gets", "cancels"
            if head.endswith(suffix) and len(head) - len(suffix) >= 3:
                forms.append(head[: -len(suffix)] + ("_" + rest if rest else ""))
        for form in forms:
            if any(p.search(form) for p in self.reads.patterns):
                return "read"
            if any(p.search(form) for p in self.writes.patterns):
                return "write"
        return None

    def is_identity(self, tool: str) -> bool:
        return tool in self.identity

    def is_transfer(self, tool: str) -> bool:
        return tool in self.transfer

    def needs_identity(self, tool: str) -> bool:
        """Whether calling this tool touches account data, so that identity must be checked first."""
        if self.is_identity(tool) or tool in self.inert or self.is_transfer(tool):
            return False
        return self.account is None or tool in self.account or self.is_write(tool)


@dataclass(frozen=True)
class PolicyPack:
    name: str
    data: Mapping[str, Any]
    description: str = ""
    priority: int = 0
    match_all: tuple[re.Pattern[str], ...] = ()
    match_any: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<pack>") -> PolicyPack:
        errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
            raise InputError(f"not a valid policy pack: {first.message}", file=source, field=where)
        for i, rule in enumerate((data.get("rules") or {}).get("argument_rules", ())):
            try:
                jsonschema.Draft202012Validator.check_schema(rule["schema"])
            except jsonschema.SchemaError as exc:
                raise InputError(
                    f"not a valid JSON Schema: {exc.message}", file=source, field=f"rules/argument_rules/{i}/schema"
                ) from None
        match = data.get("match") or {}
        return cls(
            name=data["name"],
            data=data,
            description=data.get("description", ""),
            priority=int(data.get("priority", 0)),
            match_all=tuple(re.compile(p, re.IGNORECASE) for p in match.get("all", ())),
            match_any=tuple(re.compile(p, re.IGNORECASE) for p in match.get("any", ())),
        )

    @classmethod
    def load(cls, path: str | Path) -> PolicyPack:
        path = Path(path)
        try:
            data = yaml.safe_load(read_text(path))  # InputError when it cannot be read or is not UTF-8
        except yaml.YAMLError as exc:
            raise InputError(f"not YAML: {exc}", file=str(path)) from None
        except RecursionError:  # PyYAML's composer recurses once a level
            raise InputError("not YAML: nested too deeply", file=str(path)) from None
        if not isinstance(data, Mapping):
            raise InputError("a policy pack is a YAML mapping", file=str(path))
        try:
            return cls.from_mapping(data, source=str(path))
        except re.error as exc:  # a match pattern that is not a regular expression
            raise InputError(f"not a regular expression: {exc}", file=str(path), field="match") from None
        except RecursionError:  # nested too deeply for the pack schema's validator
            raise InputError("not a valid policy pack: nested too deeply", file=str(path)) from None

    def matches(self, instructions: str | None) -> bool:
        if not self.match_all and not self.match_any:
            return False
        text = instructions or ""
        return all(p.search(text) for p in self.match_all) and (
            not self.match_any or any(p.search(text) for p in self.match_any)
        )

    def merged_over(self, base: PolicyPack) -> PolicyPack:
        """This pack with what it leaves unsaid taken from ``base`` (``extends``)."""
        merged = _deep_merge(base.data, self.data)
        merged.pop("extends", None)
        # A rule the extending pack switches on or off itself is decided by it, not by the base's text test.
        for name, rule in (self.data.get("rules") or {}).items():
            if isinstance(rule, Mapping) and "enabled" in rule and "when_policy_matches" not in rule:
                merged["rules"][name].pop("when_policy_matches", None)
        return PolicyPack.from_mapping(merged, source=self.name)

    def resolve(self, instructions: str | None) -> ResolvedPolicy:
        text = instructions or ""
        tools = self.data.get("tools") or {}
        rules = self.data.get("rules") or {}

        def on(rule: Mapping[str, Any] | None) -> bool:
            if not rule or not rule.get("enabled", True):
                return False
            pattern = rule.get("when_policy_matches")
            return not pattern or re.search(pattern, text, re.IGNORECASE) is not None

        confirm = rules.get("confirm_before_write")
        critiques = {k: v["critique"] for k, v in rules.items() if isinstance(v, Mapping) and v.get("critique")}
        return ResolvedPolicy(
            pack=self.name,
            writes=ToolRole.from_mapping(tools.get("writes")),
            identity=ToolRole.from_mapping(tools.get("identity")),
            transfer=ToolRole.from_mapping(tools.get("transfer")),
            inert=ToolRole.from_mapping(tools.get("inert")),
            reads=ToolRole.from_mapping(tools.get("reads")),
            account=ToolRole.from_mapping(tools["account"]) if tools.get("account") else None,
            identity_before_access=on(rules.get("identity_before_access")),
            confirm_before_write=on(confirm),
            confirmations=tuple(
                re.compile(p, re.IGNORECASE) for p in ((confirm or {}).get("confirmations") or DEFAULT_CONFIRMATIONS)
            ),
            one_tool_call_per_turn=on(rules.get("one_tool_call_per_turn")),
            no_message_with_tool_call=on(rules.get("no_message_with_tool_call")),
            preconditions=tuple(
                Precondition(
                    tools=frozenset(p["tools"]),
                    target=p["target"],
                    source_tools=frozenset((p.get("source") or {}).get("tools", ())),
                    id_field=(p.get("source") or {}).get("id_field"),
                    field=p.get("field"),
                    allowed=tuple(p["allowed"]) if "allowed" in p else None,
                    forbidden=tuple(p.get("forbidden", ())),
                    when=tuple(Condition.from_mapping(c) for c in p.get("when", ())),
                    critique=p.get("critique"),
                )
                for p in rules.get("preconditions", ())
            ),
            argument_rules=tuple(
                ArgumentRule(
                    tools=frozenset(a["tools"]),
                    check=SchemaCheck(a["schema"]),
                    mode=a.get("mode", "policy_violation"),
                    critique=a.get("critique"),
                )
                for a in rules.get("argument_rules", ())
            ),
            once_per_target=tuple(
                OncePerTarget(tools=frozenset(o["tools"]), target=o["target"], critique=o.get("critique"))
                for o in rules.get("once_per_target", ())
                if on(o)
            ),
            critiques=critiques,
        )


_WORD = re.compile(r"[A-Za-z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(name: str) -> str:
    """``getOrderDetails`` / ``get-order-details`` -> ``get_order_details``.

    >>> snake_case("getOrderDetails"), snake_case("find-account-id"), snake_case("GetWeather")
    ('get_order_details', 'find_account_id', 'get_weather')
    """
    return _CAMEL.sub("_", name).replace("-", "_").replace(" ", "_").lower()


def _first_word(text: str | None) -> str:
    match = _WORD.search(text or "")
    return match.group().lower() if match else ""


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


AUTO = "auto"
"""The pack setting that chooses, for each run, the pack whose ``match`` fits its policy text."""


class PackLibrary:
    """The packs to choose from: the built-in ones, and any the user adds (later ones win on equal names).

    ``force``: the name of one pack to apply to every run whatever its policy text says (``"generic"``: as
    for a domain no pack knows); ``"auto"`` (the default) chooses by the packs' ``match`` patterns.

    >>> PackLibrary.with_builtins(force="generic").policy_for("As a retail agent, ...").pack
    'generic'
    """

    def __init__(self, packs: Iterable[PolicyPack], *, force: str = AUTO) -> None:
        by_name: dict[str, PolicyPack] = {}
        for pack in packs:
            by_name[pack.name] = pack
        resolved: dict[str, PolicyPack] = {}
        for name in by_name:
            resolved[name] = self._resolve_extends(name, by_name, ())
        self.packs = resolved
        if "generic" not in self.packs:
            raise ValueError("the pack library has no 'generic' pack to fall back on")
        if force != AUTO and force not in self.packs:
            raise InputError(f"no policy pack named {force!r}; known: {AUTO}, {', '.join(sorted(self.packs))}")
        self.force = force
        self._cache: dict[str | None, ResolvedPolicy] = {}

    @staticmethod
    def _resolve_extends(name: str, by_name: Mapping[str, PolicyPack], seen: Sequence[str]) -> PolicyPack:
        pack = by_name[name]
        base_name = pack.data.get("extends")
        if not base_name:
            return pack
        if base_name in seen or base_name == name:
            raise InputError(f"policy pack {name!r} extends itself through {base_name!r}")
        if base_name not in by_name:
            raise InputError(f"policy pack {name!r} extends unknown pack {base_name!r}")
        base = PackLibrary._resolve_extends(base_name, by_name, (*seen, name))
        return pack.merged_over(base)

    def choose(self, instructions: str | None) -> PolicyPack:
        if self.force != AUTO:
            return self.packs[self.force]
        candidates = [p for p in self.packs.values() if p.matches(instructions)]
        return max(candidates, key=lambda p: p.priority) if candidates else self.packs["generic"]

    def policy_for(self, instructions: str | None) -> ResolvedPolicy:
        """The resolved rules for a run with these system instructions (cached: runs share policies)."""
        policy = self._cache.get(instructions)
        if policy is None:
            policy = self.choose(instructions).resolve(instructions)
            if len(self._cache) < 256:
                self._cache[instructions] = policy
        return policy

    @classmethod
    def with_builtins(cls, extra: Iterable[str | Path] = (), *, force: str = AUTO) -> PackLibrary:
        return cls([*builtin_packs(), *(PolicyPack.load(p) for p in extra)], force=force)


@cache
def builtin_packs() -> tuple[PolicyPack, ...]:
    folder = resources.files(__package__).joinpath("packs")
    return tuple(
        PolicyPack.from_mapping(yaml.safe_load(entry.read_text(encoding="utf-8")), source=entry.name)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    )
