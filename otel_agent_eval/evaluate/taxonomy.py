"""The failure taxonomy, read from ``taxonomy.yaml`` beside this module (one entry per mode).

>>> TAXONOMY.category_of("wrong_arguments")
'tool'
>>> TAXONOMY["loop"].crosswalk["mast"]
'1.3 Step repetition'
>>> sorted(TAXONOMY.categories)
['evaluator', 'system', 'tool', 'user_interaction', 'workflow']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class FailureMode:
    mode: str
    category: str
    description: str
    crosswalk: Mapping[str, str | None]


@dataclass(frozen=True)
class Taxonomy:
    categories: Mapping[str, str]
    modes: Mapping[str, FailureMode]

    def __getitem__(self, mode: str) -> FailureMode:
        try:
            return self.modes[mode]
        except KeyError:
            raise KeyError(f"unknown failure mode {mode!r}; known: {', '.join(self.modes)}") from None

    def __iter__(self) -> Iterator[FailureMode]:
        return iter(self.modes.values())

    def category_of(self, mode: str) -> str:
        return self[mode].category

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Taxonomy:
        categories = dict(data["categories"])
        modes: dict[str, FailureMode] = {}
        for entry in data["modes"]:
            if entry["category"] not in categories:
                raise ValueError(f"mode {entry['mode']!r}: unknown category {entry['category']!r}")
            if entry["mode"] in modes:
                raise ValueError(f"mode {entry['mode']!r} is listed twice")
            modes[entry["mode"]] = FailureMode(
                mode=entry["mode"],
                category=entry["category"],
                description=" ".join(str(entry["description"]).split()),
                crosswalk=dict(entry.get("crosswalk") or {}),
            )
        return cls(categories=categories, modes=modes)


@cache
def load_taxonomy() -> Taxonomy:
    text = resources.files(__package__).joinpath("taxonomy.yaml").read_text(encoding="utf-8")
    return Taxonomy.from_mapping(yaml.safe_load(text))


TAXONOMY = load_taxonomy()
