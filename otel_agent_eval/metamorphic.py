"""Metamorphic rewrites of agent runs: the same run told in other words, for checking that a verdict generalizes.

An evaluator must read the trace, not the vocabulary of the data it was built on. :func:`rewrite` turns a run
into another run that a correct evaluator judges the same way, by changing everything that is a matter of
naming, consistently in every place it occurs (messages, tool calls and executions, tool results, tool
definitions, the policy, the benchmark answers):

* **tool and argument names**: domain nouns are replaced (``order`` -> ``purchase``, ``user`` -> ``client``,
  ``flight`` -> ``trip``, ... :data:`NOUNS`) and a tool name's leading verb by a synonym of the same kind (a
  read verb by a read verb, a write verb by a write verb: :data:`VERBS`), in tool names, argument names, JSON
  schema property names and ``required``, keys of JSON tool results, and every snake_case token of the text
  that is one of those names;
* **identifiers**: values of result and argument fields named ``id`` / ``*_id`` / ``*_ids`` / ``*_number``
  (and dictionary keys equal to them, and tokens of the text of the same shape) get a new format derived
  deterministically from the old value (``#W1234567`` -> ``PO-…``, ``mia_li_3668`` -> ``cl-…``, 10-digit item
  ids -> ``ART-…``, ``credit_card_4421486`` -> ``card-…`` with the bare digits mapped alike);
* **amounts** are multiplied by an exact factor (3 by default: sums and differences stay exact to the cent)
  and the currency becomes the euro: numbers under money keys (``price``, ``amount``, ``balance``, ...) and
  non-integral numbers of JSON values, amounts with a currency in text (``$54.04``, ``30 dollars``), bare
  decimals (``54.04``), and the money terms of arithmetic expressions passed to a calculator tool (whose
  result is then recomputed). Counts, ids and dates are left alone;
* **person names** (``first_name`` / ``last_name`` values) become other names, as capitalized words and inside
  e-mail addresses (not in upper case: ``MIA`` is an airport; nor in lower case: ``brown`` is a colour).

Steps keep their indices and kinds; nothing else changes. :class:`Rewrite` says what mapped to what.
:func:`invariance` measures how much an evaluator's verdicts move under the rewrite.

>>> from otel_agent_eval.model import AgentRun, UserMessage, AssistantMessage, ToolCall, ToolExecution
>>> run = AgentRun(steps=(
...     UserMessage(index=0, content="I am Mia Li. What did order #W1234567 cost?"),
...     AssistantMessage(index=1, tool_calls=(
...         ToolCall(id="c1", name="get_order_details", arguments={"order_id": "#W1234567"}),)),
...     ToolExecution(index=2, name="get_order_details", call_id="c1", arguments={"order_id": "#W1234567"},
...                   result='{"order_id": "#W1234567", "first_name": "Mia", "last_name": "Li", "price": 54.04}'),
...     AssistantMessage(index=3, content="Order #W1234567 cost $54.04, Mia."),
... ))
>>> new = rewrite(run)
>>> new.steps[2].name, new.steps[2].arguments
('fetch_purchase_details', {'purchase_id': 'PO-03065698'})
>>> new.steps[2].result
'{"purchase_id": "PO-03065698", "first_name": "Joaquim", "last_name": "Yilmaz", "price": 162.12}'
>>> new.steps[0].content, new.steps[3].content
('I am Joaquim Yilmaz. What did order PO-03065698 cost?', 'Order PO-03065698 cost €162.12, Joaquim.')
>>> what = plan(run)
>>> what.ids["#W1234567"], what.names["Mia"], what.tools["get_order_details"]
('PO-03065698', 'Joaquim', 'fetch_purchase_details')
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import cached_property, lru_cache
from typing import Any, Protocol, overload

from .model import (
    AgentRun,
    AssistantMessage,
    ExpectedAction,
    JSONValue,
    Reference,
    Step,
    ToolCall,
    ToolDefinition,
    ToolExecution,
    UserMessage,
)

__all__ = [
    "NOUNS",
    "TARGETS",
    "VERBS",
    "Evaluates",
    "InvarianceReport",
    "Rewrite",
    "RunChange",
    "invariance",
    "plan",
    "rewrite",
    "spearman",
]

VERBS: Mapping[str, str] = {
    # read verbs -> read verbs
    "get": "fetch",
    "find": "lookup",
    "list": "enumerate",
    "search": "query",
    "check": "inspect",
    "lookup": "find",
    "fetch": "get",
    "show": "display",
    "read": "load",
    "calculate": "compute",
    "think": "reflect",
    # write verbs -> write verbs
    "cancel": "void",
    "modify": "amend",
    "update": "edit",
    "change": "alter",
    "book": "reserve",
    "exchange": "swap",
    "send": "issue",
    "create": "make",
    "delete": "erase",
    "remove": "drop",
    "add": "append",
    # "return" (goods) has no synonym that is not another action ("refund" is one): it stays.
    # hand-offs -> hand-offs
    "transfer": "handoff",
}
"""The leading verb of a tool name -> its replacement, within the same kind (read, write, hand-off)."""

NOUNS: Mapping[str, str] = {
    "order": "purchase",
    "orders": "purchases",
    "reservation": "booking",
    "reservations": "bookings",
    "item": "article",
    "items": "articles",
    "product": "ware",
    "products": "wares",
    "user": "client",
    "users": "clients",
    "flight": "trip",
    "flights": "trips",
    "payment": "billing",
    "payments": "billings",
    "address": "location",
    "addresses": "locations",
    "airport": "hub",
    "airports": "hubs",
    "passenger": "traveler",
    "passengers": "travelers",
    "baggage": "bag",
    "baggages": "bags",
    "certificate": "voucher",
    "certificates": "vouchers",
}
"""Domain nouns of tool names, argument names and result keys -> their replacements (plural forms listed)."""

TARGETS: Mapping[str, float] = {"same_outcome": 0.98, "same_failures": 0.98, "spearman": 0.95}
"""The project's invariance targets (see :class:`InvarianceReport`)."""

FIRST_NAMES = (
    "Aurelio",
    "Brynja",
    "Casimir",
    "Dagny",
    "Eero",
    "Fenella",
    "Gwilym",
    "Hallvard",
    "Ilse",
    "Joaquim",
    "Kasimira",
    "Leocadia",
    "Mirko",
    "Nadira",
    "Odalys",
    "Pavlina",
    "Radomir",
    "Solveig",
    "Tiberiu",
    "Ulrike",
    "Wendelin",
    "Xiomara",
    "Yannick",
    "Zdenka",
    "Anselm",
    "Birgit",
    "Cosimo",
    "Dorotea",
    "Evander",
    "Florentyna",
    "Gunnar",
    "Henrike",
    "Ignatius",
    "Jolanda",
    "Konstantin",
    "Ludmila",
    "Mattias",
    "Norberta",
    "Oriel",
    "Perpetua",
)
LAST_NAMES = (
    "Abernathy",
    "Bergqvist",
    "Castellanos",
    "Dvorak",
    "Eriksen",
    "Fairweather",
    "Gundersen",
    "Halvorsen",
    "Iwasaki",
    "Jablonski",
    "Kowalczyk",
    "Lindgren",
    "Mbeki",
    "Nakashima",
    "Ostrowski",
    "Pellegrini",
    "Quarshie",
    "Rasmussen",
    "Szabo",
    "Takahashi",
    "Uchida",
    "Vasilakis",
    "Whitlock",
    "Yilmaz",
    "Zielinski",
    "Achterberg",
    "Brannigan",
    "Cervantes",
    "Dimitrov",
    "Eisenhardt",
    "Fitzgerald",
    "Gallagher",
    "Hakobyan",
    "Ishikawa",
    "Jovanovic",
    "Karlsson",
    "Lacroix",
    "Marchetti",
    "Novak",
    "Oyelaran",
)

_ID_KEY = re.compile(r"(?:^|_)(?:ids?|number)$", re.IGNORECASE)
_MONEY_KEY = re.compile(r"price|amount|balance|cost|fee|refund|difference|charge|paid|fare|budget", re.IGNORECASE)
_NAME_KEYS = frozenset({"first_name", "last_name", "firstname", "lastname", "given_name", "family_name"})
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/()%]+$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_TEXT = re.compile(
    rf"(?P<email>{_EMAIL})"
    rf"|(?P<pre>\$|US\$|USD\s?)(?P<n1>{_NUM})"
    rf"|(?<![\w.,])(?P<n2>{_NUM})(?P<sp>\s?)(?P<word>USD|dollars?|Dollars?)\b"
    r"|(?<![\w.,$])(?P<n3>\d+\.\d{1,2})(?![\w.]|,\d)"
    r"|(?P<tok>#?\w+)"
)
_CURRENCY_WORDS = {"USD": "EUR", "dollars": "euros", "dollar": "euro", "Dollars": "Euros", "Dollar": "Euro"}
_SMALL = Decimal(10)
"""Integers below this in an arithmetic expression are taken as counts (3 passengers), not money."""

# Id formats by the noun of the key they were found under: (prefix, number of characters, alphabet).
_DIGITS = "0123456789"
_HEX = "0123456789abcdef"
_ID_FORMATS: Mapping[str, tuple[str, int, str]] = {
    "order": ("PO-", 8, _DIGITS),
    "reservation": ("BK-", 6, _DIGITS),
    "item": ("ART-", 7, _DIGITS),
    "product": ("WR-", 6, _DIGITS),
    "user": ("cl-", 8, _HEX),
    "customer": ("cl-", 8, _HEX),
    "tracking": ("TRK", 10, _DIGITS),
    "flight": ("TR", 4, _DIGITS),
}
_PAYMENT_PREFIXES = {"credit_card": "card-", "gift_card": "gift-", "paypal": "pp-", "certificate": "cert-"}
_PAYMENT_ID = re.compile(r"^(?P<prefix>[a-z]+(?:_[a-z]+)*)_(?P<digits>\d{4,})$")


# --- the rewrite -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rewrite:
    """What maps to what in one run's rewrite; apply it with :meth:`run`, :meth:`text` and :meth:`json`.

    ``tools`` and ``keys`` rename tool names and argument / result / schema keys (``keys`` holds every key
    seen, renamed or not); ``ids`` maps identifier values (and the bare digits of prefixed payment ids) to
    new ones; ``names`` maps person names (capitalized) to new ones; ``money`` holds the amounts (as found,
    before scaling) that bare numbers of text and arithmetic expressions are recognized by.
    """

    tools: Mapping[str, str]
    keys: Mapping[str, str]
    ids: Mapping[str, str]
    names: Mapping[str, str]
    money: frozenset[Decimal] = frozenset()
    factor: int = 3
    currency: tuple[str, str] = ("$", "€")

    # -- applying --

    def run(self, run: AgentRun) -> AgentRun:
        """``run`` rewritten: same steps (indices, kinds, timing, span ids), new names, ids, amounts."""
        steps = tuple(self._step(step, run) for step in run.steps)
        return replace(
            run,
            steps=steps,
            system_instructions=self.text(run.system_instructions),
            tool_definitions=tuple(self.tool_definition(t) for t in run.tool_definitions),
            reference=self._reference(run.reference),
        )

    @overload
    def text(self, text: str) -> str: ...

    @overload
    def text(self, text: None) -> None: ...

    @overload
    def text(self, text: str | None) -> str | None: ...

    def text(self, text: str | None) -> str | None:
        """Free text rewritten: ids, names, snake_case tool and key names, amounts and the currency."""
        if not text:
            return text
        return self._pattern.sub(self._replace, text)

    def json(self, value: JSONValue, *, money: bool = False) -> JSONValue:
        """A decoded JSON value rewritten: keys renamed, strings as :meth:`text`, amounts scaled.

        ``money``: the value sits under a money key (every number in it is an amount).
        """
        if isinstance(value, Mapping):
            return {self.key(k): self.json(v, money=money or bool(_MONEY_KEY.search(str(k)))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v, money=money) for v in value]
        if isinstance(value, str):
            if _is_expression(value):
                return self.expression(value)
            return self.text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return value * self.factor if money else value
        if isinstance(value, float):
            return self._scale_float(value) if money or not value.is_integer() else value
        return value

    def key(self, key: str) -> str:
        """A key of arguments, results or schema properties, renamed (ids used as keys get their new id)."""
        if key in self.ids:
            return self.ids[key]
        return self.keys.get(key) or _rename(key, verbs=False)

    def tool(self, name: str) -> str:
        return self.tools.get(name) or _rename(name, verbs=True)

    def tool_definition(self, tool: ToolDefinition) -> ToolDefinition:
        return replace(
            tool,
            name=self.tool(tool.name),
            description=self.text(tool.description),
            parameters=None if tool.parameters is None else self._schema(tool.parameters),
        )

    def expression(self, expr: str) -> str:
        """An arithmetic expression with its money terms scaled (when it has any; counts are kept)."""
        if not self._is_money_expression(expr):
            return expr
        return _NUMBER.sub(lambda m: self._scale_term(m.group()), expr)

    # -- internals --

    def _step(self, step: Step, run: AgentRun) -> Step:
        if isinstance(step, ToolExecution):
            return replace(
                step,
                name=self.tool(step.name),
                arguments=None if step.arguments is None else self.json(dict(step.arguments)),
                result=self._result(step.result, step.arguments),
                error=self.text(step.error),
            )
        if isinstance(step, AssistantMessage):
            return replace(step, content=self.text(step.content), tool_calls=self._calls(step.tool_calls))
        if isinstance(step, UserMessage):
            return replace(step, content=self.text(step.content), tool_calls=self._calls(step.tool_calls))
        raise TypeError(f"unknown step {type(step).__name__}")

    def _calls(self, calls: tuple[ToolCall, ...]) -> tuple[ToolCall, ...]:
        return tuple(
            replace(
                call,
                name=self.tool(call.name),
                arguments=None if call.arguments is None else self.json(dict(call.arguments)),
                raw_arguments=self.text(call.raw_arguments),
            )
            for call in calls
        )

    def _result(self, result: str | None, arguments: Mapping[str, JSONValue] | None) -> str | None:
        if result is None:
            return None
        recomputed = self._recomputed(result, arguments)
        if recomputed is not None:
            return recomputed
        decoded = _decode(result)
        if decoded is _NOT_JSON or isinstance(decoded, str):
            return self.text(result)
        compact = '":' in result and '": ' not in result
        return json.dumps(self.json(decoded), ensure_ascii=False, separators=(",", ":") if compact else None)

    def _recomputed(self, result: str, arguments: Mapping[str, JSONValue] | None) -> str | None:
        """The result of a calculator call on a money expression, computed again from the scaled expression."""
        expressions = [v for v in (arguments or {}).values() if isinstance(v, str) and _is_expression(v)]
        if len(expressions) != 1 or not self._is_money_expression(expressions[0]):
            return None
        try:
            shown = Decimal(result.strip())
            before, after = _evaluate(expressions[0]), _evaluate(self.expression(expressions[0]))
        except (InvalidOperation, ValueError, ZeroDivisionError, SyntaxError):
            return None
        exponent = shown.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if abs(Fraction(shown) - before) > Fraction(1, 2 * 10**places) + Fraction(1, 10**9):
            return None
        value = Decimal(after.numerator) / Decimal(after.denominator)
        return f"{value:.{places}f}"

    def _schema(self, schema: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        for k, v in schema.items():
            if k == "properties" and isinstance(v, Mapping):
                out[k] = {self.key(p): self._subschema(s) for p, s in v.items()}
            elif k == "required" and isinstance(v, list):
                out[k] = [self.key(p) if isinstance(p, str) else p for p in v]
            elif k in ("description", "title") and isinstance(v, str):
                out[k] = self.text(v)
            elif k in ("enum", "examples", "default", "const"):
                out[k] = self.json(v)
            else:
                out[k] = self._subschema(v)
        return out

    def _subschema(self, value: JSONValue) -> JSONValue:
        if isinstance(value, Mapping):
            return self._schema(value)
        if isinstance(value, list):
            return [self._subschema(v) for v in value]
        return value

    def _reference(self, reference: Reference | None) -> Reference | None:
        if reference is None:
            return None
        return replace(
            reference,
            actions=tuple(ExpectedAction(self.tool(a.name), self.json(dict(a.arguments))) for a in reference.actions),
            outputs=tuple(self.text(o) for o in reference.outputs),
        )

    @cached_property
    def _names_lower(self) -> dict[str, str]:
        return {old.lower(): new.lower() for old, new in self.names.items()}

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        """The text pattern, with the spellings of prefixed ids where a space or hyphen stands for an underscore
        ("gift card_3491931" for ``gift_card_3491931``) in front."""
        variants = []
        for old in self.ids:
            m = _PAYMENT_ID.match(old)
            if m:
                words = [*m.group("prefix").split("_"), m.group("digits")]
                variants.append(r"[ _\-]".join(re.escape(w) for w in words))
        if not variants:
            return _TEXT
        alternatives = "|".join(sorted(variants, key=len, reverse=True))
        return re.compile(rf"(?<![\w-])(?P<pid>{alternatives})(?![\w-])|" + _TEXT.pattern)

    def _replace(self, m: re.Match[str]) -> str:
        pid = m.groupdict().get("pid")
        if pid is not None:
            if "_" in pid and pid not in self.ids:
                return self.ids[re.sub(r"[ \-]", "_", pid)]
            return _TEXT.sub(self._replace, pid)
        if m.group("email") is not None:
            local, _, domain = m.group("email").partition("@")
            if local in self.ids:
                return f"{self.ids[local]}@{domain}"
            lower = self._names_lower
            local = re.sub(
                r"[A-Za-z]+",
                lambda w: _same_case(w.group(), lower[w.group().lower()]) if w.group().lower() in lower else w.group(),
                local,
            )
            return f"{local}@{domain}"
        if m.group("n1") is not None:
            pre = m.group("pre")
            new_pre = self.currency[1] if pre.startswith(("$", "US$")) else pre.replace("USD", "EUR")
            return new_pre + self._scale_text_number(m.group("n1"))
        if m.group("n2") is not None:
            return self._scale_text_number(m.group("n2")) + m.group("sp") + _CURRENCY_WORDS[m.group("word")]
        if m.group("n3") is not None:
            number = m.group("n3")
            if len(number.partition(".")[2]) == 2 or Decimal(number) in self.money:
                return self._scale_text_number(number)
            return number
        return self._token(m.group("tok"))

    def _token(self, tok: str) -> str:
        if tok in self.ids:
            return self.ids[tok]
        if tok.startswith("#") and len(tok) > 1:
            return "#" + self._token(tok[1:])
        if "_" in tok or any(c.isdigit() for c in tok):
            # A tool or key name written as such ("order_id", "address1", "Address2").
            if tok in self.tools:
                return self.tools[tok]
            if tok in self.keys:
                return self.keys[tok]
            low = tok.lower()
            if low != tok and any(c.isalpha() for c in tok) and low in self.keys:
                return _same_case(tok, self.keys[low])
        if tok in self.names:
            return self.names[tok]
        return _CURRENCY_WORDS.get(tok, tok)

    def _scale_text_number(self, number: str) -> str:
        commas = "," in number
        value = Decimal(number.replace(",", "")) * self.factor
        return f"{value:,}" if commas else f"{value}"

    def _scale_float(self, value: float) -> float:
        return float(Decimal(repr(value)) * self.factor)

    def _scale_term(self, number: str) -> str:
        value = Decimal(number)
        is_money = ("." in number and len(number.partition(".")[2]) == 2) or (
            value in self.money and (value >= _SMALL or "." in number)
        )
        return f"{value * self.factor}" if is_money else number

    def _is_money_expression(self, expr: str) -> bool:
        for number in _NUMBER.findall(expr):
            value = Decimal(number)
            if len(number.partition(".")[2]) == 2 or (value in self.money and (value >= _SMALL or "." in number)):
                return True
        return False


# --- planning: what is in the run ---------------------------------------------------------------------------


def plan(run: AgentRun, *, seed: int = 0, factor: int = 3) -> Rewrite:
    """The rewrite of ``run``: its tool names, keys, ids, person names and amounts, and what each becomes.

    Deterministic: the same run and seed give the same rewrite; an id is derived from its value (and the seed),
    so the same id gets the same new id wherever it occurs (in this run and, barring collisions, in others).
    """
    found = _Found()
    for tool in run.tool_definitions:
        found.tools.add(tool.name)
        if tool.parameters is not None:
            found.schema(tool.parameters)
    for step in run.steps:
        for call in _calls_of(step):
            found.tools.add(call.name)
            if call.arguments is not None:
                found.walk(call.arguments)
        if isinstance(step, ToolExecution):
            found.tools.add(step.name)
            if step.arguments is not None:
                found.walk(step.arguments)
            decoded = _decode(step.result) if step.result is not None else _NOT_JSON
            if decoded is not _NOT_JSON:
                found.walk(decoded)
    if run.reference is not None:
        for action in run.reference.actions:
            found.tools.add(action.name)
            found.walk(action.arguments)

    texts = list(_texts(run))
    ids = _new_ids(found, texts, seed)
    names = _new_names(found.names, seed, taken={t for text in texts for t in re.findall(r"[A-Za-z]+", text)})
    money = set(found.money)
    for text in texts:
        for m in _TEXT.finditer(text):
            number = m.group("n1") or m.group("n2")
            if number is not None:
                money.add(Decimal(number.replace(",", "")))
    draft = Rewrite(
        tools={t: _rename(t, verbs=True) for t in sorted(found.tools)},
        keys={k: _rename(k, verbs=False) for k in sorted(found.keys)},
        ids=ids,
        names=names,
        money=frozenset(money),
        factor=factor,
    )
    # Results of calculations on money are money too (a later expression may reuse them).
    for step in run.steps:
        if isinstance(step, ToolExecution) and step.result is not None:
            for value in (step.arguments or {}).values():
                if isinstance(value, str) and _is_expression(value) and draft._is_money_expression(value):
                    with contextlib.suppress(InvalidOperation):
                        money.add(Decimal(step.result.strip()))
    return replace(draft, money=frozenset(money))


def rewrite(run: AgentRun, *, seed: int = 0, factor: int = 3) -> AgentRun:
    """``run`` with its tools, arguments, ids, amounts, currency and person names consistently changed."""
    return plan(run, seed=seed, factor=factor).run(run)


@dataclass
class _Found:
    tools: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    ids: dict[str, str] = field(default_factory=dict)
    """Id value -> the noun of the key it was first found under ("" when the key names none)."""
    names: dict[str, str] = field(default_factory=dict)
    """Person name word -> "first" or "last"."""
    money: set[Decimal] = field(default_factory=set)

    def walk(self, value: JSONValue, key: str = "", money: bool = False) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                k = str(k)
                self.keys.add(k)
                self.walk(v, k, money or bool(_MONEY_KEY.search(k)))
            return
        if isinstance(value, list):
            for v in value:
                self.walk(v, key, money)
            return
        if isinstance(value, str):
            if _ID_KEY.search(key) and value and not value.isspace() and not self.ids.get(value):
                self.ids[value] = _id_noun(key)
            if key.lower() in _NAME_KEYS:
                kind = "first" if key.lower() in ("first_name", "firstname", "given_name") else "last"
                for word in re.findall(r"[A-Za-z]{2,}", value):
                    self.names.setdefault(word[0].upper() + word[1:], kind)
            return
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int) and money:
            self.money.add(Decimal(value))
        elif isinstance(value, float) and (money or not value.is_integer()):
            self.money.add(Decimal(repr(value)))

    def schema(self, schema: Mapping[str, JSONValue]) -> None:
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                self.keys.add(str(name))
                if isinstance(sub, Mapping):
                    self.schema(sub)
        for k in ("items", "additionalProperties"):
            sub = schema.get(k)
            if isinstance(sub, Mapping):
                self.schema(sub)
        for k in ("anyOf", "oneOf", "allOf"):
            subs = schema.get(k)
            if isinstance(subs, list):
                for sub in subs:
                    if isinstance(sub, Mapping):
                        self.schema(sub)


def _calls_of(step: Step) -> tuple[ToolCall, ...]:
    return step.tool_calls if isinstance(step, (AssistantMessage, UserMessage)) else ()


def _texts(run: AgentRun) -> Iterator[str]:
    """Every piece of text of the run (messages, arguments' strings, results, errors, policy, descriptions)."""
    if run.system_instructions:
        yield run.system_instructions
    for tool in run.tool_definitions:
        if tool.description:
            yield tool.description
        if tool.parameters is not None:
            yield from _strings(tool.parameters)
    for step in run.steps:
        if isinstance(step, (UserMessage, AssistantMessage)) and step.content:
            yield step.content
        for call in _calls_of(step):
            yield from _strings(call.arguments) if call.arguments is not None else [call.raw_arguments or ""]
        if isinstance(step, ToolExecution):
            if step.arguments is not None:
                yield from _strings(step.arguments)
            for text in (step.result, step.error):
                if text:
                    yield text
    if run.reference is not None:
        yield from run.reference.outputs
        for action in run.reference.actions:
            yield from _strings(action.arguments)


def _strings(value: JSONValue) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


_NOT_JSON: Any = object()


def _decode(text: str) -> JSONValue:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _is_expression(value: str) -> bool:
    """Whether a string is an arithmetic expression (not a date, a range or a phone number)."""
    return bool(
        _ARITHMETIC.match(value)
        and re.search(r"\d", value)
        and re.search(r"[+*/]|\s-\s|\d-\d", value)
        and not re.fullmatch(r"\d+(?:-\d+)+", value.strip())
    )


def _rename(name: str, *, verbs: bool) -> str:
    """A snake_case (or spaced) name with its domain nouns, and a tool name's leading verb, replaced."""
    parts = re.split(r"([_\s]+)", name)
    out = []
    for i, part in enumerate(parts):
        if i == 0 and verbs and part in VERBS and len(parts) >= 1:
            out.append(VERBS[part])
            continue
        m = re.fullmatch(r"([a-z]+)(\d*)", part)
        out.append(NOUNS[m.group(1)] + m.group(2) if m and m.group(1) in NOUNS else part)
    return "".join(out)


def _id_noun(key: str) -> str:
    for part in key.lower().split("_"):
        noun = part[:-1] if part.endswith("s") and part[:-1] in _ID_FORMATS else part
        if noun in _ID_FORMATS or noun == "payment":
            return noun
    return ""


_UPPER_RUN = re.compile(r"[A-Z]+")
_LOWER_RUN = re.compile(r"[a-z]+")
_DIGIT = re.compile(r"\d")
_DIGIT_TOKEN = re.compile(r"#?[^\W\d]*\d\w*")


@lru_cache(maxsize=65536)
def _template(value: str) -> str:
    """The shape of an id: digits as 9, runs of lower-case letters as a, of upper-case letters as A."""
    return _UPPER_RUN.sub("A", _LOWER_RUN.sub("a", _DIGIT.sub("9", value)))


def _shape_worthy(value: str) -> bool:
    """Whether tokens of the text that merely have this id's shape are taken for ids of its kind."""
    has_digit = any(c.isdigit() for c in value)
    if value.isdigit():
        return len(value) >= 6
    return has_digit and len(value) >= 5 and any(c.isalpha() for c in value)


def _hash(seed: int, *parts: object) -> int:
    text = "\0".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")


def _draw(number: int, length: int, alphabet: str) -> str:
    out = []
    for _ in range(length):
        number, r = divmod(number, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def _new_ids(found: _Found, texts: Sequence[str], seed: int) -> dict[str, str]:
    ids = dict(found.ids)
    # Tokens of the text shaped like a known id of a kind (examples in descriptions, ids only ever written).
    shapes: dict[str, Counter[str]] = {}
    for value, noun in ids.items():
        if _shape_worthy(value):
            shapes.setdefault(_template(value), Counter())[noun] += 1
    if shapes:
        for text in texts:
            for tok in _DIGIT_TOKEN.findall(text):
                if tok not in ids and (kinds := shapes.get(_template(tok))):
                    ids[tok] = kinds.most_common(1)[0][0]
    taken: set[str] = set(ids)
    out: dict[str, str] = {}
    for value in sorted(ids, key=lambda v: (ids[v], v)):
        noun = ids[value]
        payment = _PAYMENT_ID.match(value)
        if payment and (noun in ("payment", "") or payment.group("prefix") in _PAYMENT_PREFIXES):
            # The digits alone stand for the id in text ("Gift Card 7091239"): they get new digits, the same
            # whatever the prefix, and the new id is the new prefix and the new digits.
            prefix = _PAYMENT_PREFIXES.get(payment.group("prefix"), "pm-")
            digits = payment.group("digits")
            if digits not in out:
                attempt = 0
                while True:
                    new_digits = "1" + _draw(_hash(seed, "digits", digits, attempt), len(digits) - 1, _DIGITS)
                    if new_digits not in taken:
                        break
                    attempt += 1
                out[digits] = new_digits
                taken.add(new_digits)
            out[value] = prefix + out[digits]
            taken.add(out[value])
            continue
        prefix, length, alphabet = _ID_FORMATS.get(noun, ("X-", 8, _HEX))
        attempt = 0
        while True:
            new = prefix + _draw(_hash(seed, noun, value, attempt), length, alphabet)
            if new not in taken:
                break
            attempt += 1
        out[value] = new
        taken.add(new)
        if value.startswith("#") and value[1:] not in ids:
            out.setdefault(value[1:], new)
    return out


def _new_names(found: Mapping[str, str], seed: int, *, taken: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used = set(taken) | set(found)
    for name in sorted(found):
        pool = FIRST_NAMES if found[name] == "first" else LAST_NAMES
        start = _hash(seed, "name", name) % len(pool)
        for i in range(len(pool) * 2):
            candidate = pool[(start + i) % len(pool)] if i < len(pool) else pool[(start + i) % len(pool)] + "son"
            if candidate not in used:
                break
        else:  # pragma: no cover - more names in one run than the pools hold
            candidate = f"{name}x{_hash(seed, name) % 1000}"
        out[name] = candidate
        used.add(candidate)
    return out


def _same_case(old: str, new: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new.lower()


_OPERATORS: Mapping[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


def _evaluate(expr: str) -> Fraction:
    """An arithmetic expression (numbers, + - * / %, parentheses) evaluated exactly."""

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(str(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = value(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        raise ValueError(f"not arithmetic: {ast.dump(node)}")

    return value(ast.parse(expr.strip(), mode="eval"))


# --- invariance ----------------------------------------------------------------------------------------------


class _FindingLike(Protocol):
    @property
    def step(self) -> int: ...

    @property
    def mode(self) -> str: ...


class _EvaluationLike(Protocol):
    @property
    def outcome(self) -> str: ...

    @property
    def failure_score(self) -> float: ...

    @property
    def failures(self) -> Sequence[_FindingLike]: ...


class Evaluates(Protocol):
    """What :func:`invariance` needs of an evaluator: ``otel_agent_eval.evaluate.Engine`` is one."""

    def evaluate(self, run: AgentRun) -> _EvaluationLike: ...


@dataclass(frozen=True)
class RunChange:
    """A run whose verdict moved under the rewrite: before and after."""

    position: int
    """The run's position in the list given to :func:`invariance`."""
    label: str
    """The run's source (file name, index and id), or its trace id."""
    outcome: tuple[str, str]
    failures: tuple[frozenset[tuple[int, str]], frozenset[tuple[int, str]]]
    """The (step, mode) of the deciding failures."""
    score: tuple[float, float]

    @property
    def lost(self) -> frozenset[tuple[int, str]]:
        """Failures of the original run the rewritten one does not have."""
        return self.failures[0] - self.failures[1]

    @property
    def gained(self) -> frozenset[tuple[int, str]]:
        """Failures of the rewritten run the original does not have."""
        return self.failures[1] - self.failures[0]

    def describe(self) -> str:
        parts = [f"{self.label}:"]
        if self.outcome[0] != self.outcome[1]:
            parts.append(f"outcome {self.outcome[0]} -> {self.outcome[1]};")
        if self.lost:
            parts.append("lost " + ", ".join(f"{mode}@{step}" for step, mode in sorted(self.lost)) + ";")
        if self.gained:
            parts.append("gained " + ", ".join(f"{mode}@{step}" for step, mode in sorted(self.gained)) + ";")
        parts.append(f"score {self.score[0]:.3f} -> {self.score[1]:.3f}")
        return " ".join(parts)


@dataclass(frozen=True)
class InvarianceReport:
    """How an evaluator's verdicts moved when every run was rewritten.

    ``same_outcome``: share of runs with the same outcome; ``same_failures``: share with the same set of
    (step, mode) of deciding failures; ``spearman``: rank correlation of the failure scores. ``changed``: the
    runs where the outcome or the failures differ.
    """

    runs: int
    same_outcome: float
    same_failures: float
    spearman: float
    changed: tuple[RunChange, ...]

    def meets(self, targets: Mapping[str, float] = TARGETS) -> bool:
        return all(getattr(self, name) >= floor for name, floor in targets.items())

    def summary(self) -> str:
        lines = [
            f"runs {self.runs}: same outcome {self.same_outcome:.3f}, same failures {self.same_failures:.3f}, "
            f"Spearman {self.spearman:.3f}"
        ]
        lines += [f"  {change.describe()}" for change in self.changed]
        return "\n".join(lines)


def invariance(
    engine: Evaluates,
    runs: Iterable[AgentRun],
    *,
    seed: int = 0,
    transform: Callable[[AgentRun], AgentRun] | None = None,
) -> InvarianceReport:
    """Evaluate every run as it is and rewritten (``transform``, by default :func:`rewrite` with ``seed``).

    Both are evaluated without their benchmark answers (``reference``), as a reference-free evaluator sees them.
    """
    change = transform or (lambda r: rewrite(r, seed=seed))
    same_outcome = same_failures = 0
    before_scores: list[float] = []
    after_scores: list[float] = []
    changed: list[RunChange] = []
    n = 0
    for position, run in enumerate(runs):
        original = replace(run, reference=None)
        a = engine.evaluate(original)
        b = engine.evaluate(replace(change(original), reference=None))
        fa = frozenset((f.step, f.mode) for f in a.failures)
        fb = frozenset((f.step, f.mode) for f in b.failures)
        same_outcome += a.outcome == b.outcome
        same_failures += fa == fb
        before_scores.append(a.failure_score)
        after_scores.append(b.failure_score)
        if a.outcome != b.outcome or fa != fb:
            changed.append(
                RunChange(position, _label(run), (a.outcome, b.outcome), (fa, fb), (a.failure_score, b.failure_score))
            )
        n += 1
    return InvarianceReport(
        runs=n,
        same_outcome=same_outcome / n if n else 1.0,
        same_failures=same_failures / n if n else 1.0,
        spearman=spearman(before_scores, after_scores),
        changed=tuple(changed),
    )


def _label(run: AgentRun) -> str:
    if run.source is not None:
        name = run.source.file.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{name}[{run.source.index}]" + (f" ({run.source.id})" if run.source.id else "")
    return run.trace_id or "run"


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank); 1.0 for identical sequences.

    >>> spearman([0.1, 0.5, 0.5, 0.9], [0.2, 0.6, 0.6, 1.0])
    1.0
    >>> round(spearman([1, 2, 3, 4], [4, 3, 2, 1]), 6)
    -1.0
    """
    if len(xs) != len(ys):
        raise ValueError("spearman: sequences of different lengths")
    if list(xs) == list(ys):
        return 1.0
    rx, ry = _ranks(xs), _ranks(ys)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return 0.0
    return cov / math.sqrt(vx * vy)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks
