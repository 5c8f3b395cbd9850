"""The compiled fast path of argument checks agrees with jsonschema, on the real tools and calls."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from conftest import DATA, RECORDED_FILES

from otel_agent_eval.evaluate.schemas import SchemaCheck, portable
from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.model import AgentRun, AssistantMessage


def _variants(arguments: dict[str, Any]) -> Iterator[Any]:
    """The call as made, and broken copies: a key dropped, a value of another type, an extra key, nested too."""
    yield arguments
    for key, value in arguments.items():
        dropped = dict(arguments)
        del dropped[key]
        yield dropped
        for other in (None, 7, "x", [], {}, 1.5, True):
            if type(other) is not type(value):
                yield {**arguments, key: other}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for inner in value[0]:
                broken = copy.deepcopy(arguments)
                broken[key][0][inner] = None
                yield broken
    yield {**arguments, "unexpected_key": 1}
    yield []


@pytest.mark.parametrize("domain", ["airline", "retail"])
def test_fast_check_agrees_with_jsonschema_on_real_calls(domain: str) -> None:
    tools = {t.name: t for t in load_tools(DATA / "tau-bench" / f"{domain}-tools.json")}
    checks = {name: SchemaCheck(t.parameters or {}) for name, t in tools.items()}
    assert all(c.compiled for c in checks.values())  # the fast path is really what runs on these tools
    compared = invalid = 0
    for path in RECORDED_FILES:
        for run in load_runs(path, tools=tuple(tools.values())):
            assert isinstance(run, AgentRun)
            for step in run.steps:
                for call in step.tool_calls if isinstance(step, AssistantMessage) else ():
                    if call.name not in checks or call.arguments is None:
                        continue
                    validator = checks[call.name].validator
                    for instance in _variants(dict(call.arguments)):
                        want = validator.is_valid(instance)
                        assert checks[call.name].is_valid(instance) == want, (call.name, instance)
                        assert (not list(checks[call.name].errors(instance))) == want
                        compared += 1
                        invalid += not want
    assert compared > 1000 and invalid > 500


def test_only_portable_schemas_are_compiled() -> None:
    assert portable({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"enum": [1]}]}}})
    assert not portable({"type": "array", "items": [{"type": "string"}]})  # tuple form: drafts disagree
    assert not portable({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"})
    assert not portable({"properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"type": "string"}}})
    assert not SchemaCheck({"type": "array", "prefixItems": [{"type": "string"}]}).compiled
    refs = SchemaCheck({"properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"type": "string"}}})
    assert not refs.compiled and refs.is_valid({"a": "x"}) and not refs.is_valid({"a": 1})


def test_a_broken_schema_is_refused() -> None:
    with pytest.raises(jsonschema.SchemaError):
        SchemaCheck({"type": "no-such-type"})
