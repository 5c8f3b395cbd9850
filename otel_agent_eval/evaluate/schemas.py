"""JSON Schema checks of tool arguments: fast for the common case (valid), exact for the errors.

``jsonschema`` is the authority: it says what is wrong and where. It interprets a schema on every call,
which made schema checks the largest part of an in-loop check (a third of a millisecond for one nested
booking call). ``fastjsonschema`` compiles a schema into Python code that answers "valid?" twenty times
faster. So a call is first checked by the compiled code; only when that says invalid does ``jsonschema``
look for the errors (and its answer is the one that counts).

The compiled check is used only for schemas whose every keyword means the same in draft 7 (what
``fastjsonschema`` implements) and in draft 2020-12 (what tool schemas are read as): no ``$ref``, no
``$schema``, no array-form ``items``, none of the newer keywords. Anything else goes to ``jsonschema``
alone. Formats are not checked (``jsonschema`` does not check them by default either).

>>> check = SchemaCheck({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
>>> check.is_valid({"n": 1}), check.is_valid({"n": "one"}), check.compiled
(True, False, True)
>>> [e.message for e in check.errors({})]
["'n' is a required property"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fastjsonschema
import jsonschema

# Keywords that take no subschema and mean the same in draft 7 and 2020-12.
_PLAIN = frozenset(
    {
        "type", "enum", "const", "required", "description", "title", "default", "examples", "$comment",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
        "pattern", "format", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
        "readOnly", "writeOnly", "deprecated", "nullable", "strict",
    }
)  # fmt: skip
_SUBSCHEMA = frozenset({"not", "additionalProperties", "propertyNames", "contains", "if", "then", "else", "items"})
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties"})


def portable(schema: Any) -> bool:
    """Whether every keyword of ``schema`` means the same in draft 7 and draft 2020-12."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, Mapping):
        return False
    for key, value in schema.items():
        if key in _PLAIN:
            continue
        if key in _SUBSCHEMA:
            if not portable(value):  # array-form "items" is tuple validation in draft 7, an error in 2020-12
                return False
        elif key in _SUBSCHEMA_LISTS:
            if not isinstance(value, list) or not all(portable(s) for s in value):
                return False
        elif key in _SUBSCHEMA_MAPS:
            if not isinstance(value, Mapping) or not all(portable(s) for s in value.values()):
                return False
        else:
            return False
    return True


class SchemaCheck:
    """One schema, ready to check many instances. Raises ``jsonschema.SchemaError`` for a broken schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        schema = dict(schema)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        self.validator: jsonschema.protocols.Validator = cls(schema)
        self._fast: Callable[[Any], Any] | None = None
        if portable(schema):
            try:
                self._fast = fastjsonschema.compile(schema, use_formats=False)
            except Exception:  # anything the compiler cannot take is checked by jsonschema alone
                self._fast = None

    @property
    def compiled(self) -> bool:
        """Whether the fast compiled check is in use."""
        return self._fast is not None

    def is_valid(self, instance: Any) -> bool:
        if self._fast is not None:
            try:
                self._fast(instance)
                return True
            except fastjsonschema.JsonSchemaValueException:
                pass  # jsonschema decides
        return bool(self.validator.is_valid(instance))

    def errors(self, instance: Any) -> Iterator[jsonschema.ValidationError]:
        """What is wrong with ``instance`` (nothing when it is valid, and nothing when the schema cannot be
        applied to it: one that refers to itself without end, ``{"$ref": "#"}``, says nothing of the agent)."""
        try:
            if self.is_valid(instance):
                return iter(())
            return iter(list(self.validator.iter_errors(instance)))
        except RecursionError:
            return iter(())
