"""Settings of the processor's components, each declared once.

A component's configuration is a dataclass whose fields are declared with :func:`setting`: its default, its
help and its range. From that one declaration come ``validate()``, the ``serve`` flags (``--quiet-period``),
the ``AGENT_EVAL_*`` environment variables, the keys of a ``--config`` YAML file (a section per component, as
in a Collector's configuration) and the settings table of docs/processor.md, as the Collector derives a
component's ``Validate()`` and documentation from its ``config.go``.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class BatchConfig(Component):
...     section = "batch"
...     size: int = setting(64, "Requests in one batch at most.", minimum=1)
>>> BatchConfig(size=0).validate()
Traceback (most recent call last):
...
otel_agent_eval.processor.security.StartupError: batch.size (--size) 0: must be at least 1
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .security import StartupError


@dataclass(frozen=True)
class Spec:
    """What a setting is beyond its type and default: its help, its range, how its flag is spelt."""

    help: str
    minimum: float | None = None
    min_open: bool = False  # the minimum itself is out of range (a timeout of 0 is none)
    maximum: float | None = None
    flag: str | None = None  # the flag's name when it is not the field's (``--policy-pack`` for policy_packs)
    metavar: str | None = None
    secret: bool = False  # never printed (``serve --print-config`` shows it as set or not)

    def check(self, where: str, value: Any) -> None:
        """Raise :class:`StartupError` naming ``where`` when a number is out of range (each item of a tuple)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if self.minimum is not None and (value <= self.minimum if self.min_open else value < self.minimum):
            raise StartupError(f"{where} {value}: must be {'over' if self.min_open else 'at least'} {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise StartupError(f"{where} {value}: must be at most {self.maximum:g}")


def setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    min_open: bool = False,
    maximum: float | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    secret: bool = False,
) -> Any:
    """A field of a component's configuration: its default and its :class:`Spec` (a mutable default, a dict
    or a list, is given as a factory so that no two configurations share it)."""
    spec = Spec(help, minimum, min_open, maximum, flag, metavar, secret)
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"spec": spec})
    return dataclasses.field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class Field:
    """One declared setting of a component, as the CLI, the YAML loader and the docs see it."""

    section: str
    name: str
    type: Any  # the resolved annotation: int, float, bool, str | None, Path, tuple[Path, ...], dict[str, str]
    default: Any
    spec: Spec

    @property
    def flag(self) -> str:
        return "--" + (self.spec.flag or self.name.replace("_", "-"))

    @property
    def envvar(self) -> str:
        """Its environment variable (click's automatic one, from the option's name)."""
        return f"AGENT_EVAL_{self.name.upper()}"

    @property
    def where(self) -> str:
        return f"{self.section}.{self.name} ({self.flag})"


class Component:
    """A component's configuration: ``validate()`` checks every declared range; a component with rules beyond
    ranges extends it (and calls this one)."""

    section: ClassVar[str]

    @classmethod
    def fields(cls) -> list[Field]:
        hints = typing.get_type_hints(cls)
        found = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = f.metadata.get("spec")
            if spec is None:
                continue
            factory: Any = f.default_factory
            default = f.default if f.default is not dataclasses.MISSING else factory()
            found.append(Field(cls.section, f.name, hints[f.name], default, spec))
        return found

    def validate(self) -> None:
        for f in self.fields():
            value = getattr(self, f.name)
            check_type(f, value)
            for item in value if isinstance(value, tuple) else (value,):
                f.spec.check(f.where, item)


def _is(value: Any, kind: Any) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_type(f: Field, value: Any) -> None:
    """:class:`StartupError` naming the setting when ``value`` is not of its declared type (settings given in
    code are not converted by the command line's types)."""
    origin = typing.get_origin(f.type)
    kind = base_type(f.type)
    if value is None and is_optional(f.type):
        return
    if origin is tuple:
        ok = isinstance(value, tuple) and all(_is(v, kind) for v in value)
        expected = f"a tuple of {kind.__name__}"
    elif origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        expected = "a mapping of text to text"
    else:
        ok = _is(value, kind)
        expected = kind.__name__
    if not ok:
        raise StartupError(f"{f.where} {value!r}: expected {expected}")


def is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def base_type(annotation: Any) -> Any:
    """``int`` of ``int | None``, ``Path`` of ``tuple[Path, ...]``; the annotation itself otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
    origin = typing.get_origin(annotation)
    if origin is tuple or (args and len(args) == 1):
        return args[0]
    return annotation


def as_yaml_value(value: Any) -> Any:
    """A setting's value as a YAML file would hold it (paths as text, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [as_yaml_value(v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def markdown_table(components: Iterable[type[Component]]) -> str:
    """The settings of these components as a Markdown table (docs/processor.md holds it; a test keeps it
    current): YAML key, flag, default, range, what it does."""
    rows = ["| key | flag | environment | default | range | what it sets |", "|---|---|---|---|---|---|"]
    for component in components:
        for f in component.fields():
            spec = f.spec
            bounds = []
            if spec.minimum is not None:
                bounds.append(f"{'>' if spec.min_open else '≥'} {spec.minimum:g}")
            if spec.maximum is not None:
                bounds.append(f"≤ {spec.maximum:g}")
            default = "" if f.default in (None, (), {}) else f"`{as_yaml_value(f.default)}`"
            flag = f"`--{f.flag[2:]}` / `--no-{f.flag[2:]}`" if f.type is bool else f"`{f.flag}`"
            text = spec.help.replace("|", "\\|")
            env = f"`{f.envvar}`"
            rows.append(f"| `{f.section}.{f.name}` | {flag} | {env} | {default} | {', '.join(bounds)} | {text} |")
    return "\n".join(rows) + "\n"


__all__ = [
    "Component",
    "Field",
    "Spec",
    "as_yaml_value",
    "base_type",
    "check_type",
    "is_optional",
    "markdown_table",
    "setting",
]
