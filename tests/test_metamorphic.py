"""Metamorphic rewrites (otel_agent_eval.metamorphic): consistent and complete on every development run, and the
evaluator's verdicts invariant under them (issue 9, item 5).

The rewrite renames tools and arguments, changes the format of every id, scales amounts by 3 in another
currency and swaps person names. A correct evaluator reads the trace, not the vocabulary of the development
data: it gives the rewritten run the verdict it gives the original.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, RECORDED_FILES

from otel_agent_eval.errors import InputError
from otel_agent_eval.evaluate import Engine, PackLibrary
from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.metamorphic import TARGETS, InvarianceReport, Rewrite, invariance, plan, rewrite, spearman
from otel_agent_eval.model import (
    AgentRun,
    AssistantMessage,
    JSONValue,
    ToolCall,
    ToolDefinition,
    ToolExecution,
    UserMessage,
)

_DOMAIN = re.compile(r"(airline|retail)")


def _tools_for(path: Path) -> tuple[ToolDefinition, ...]:
    domain = _DOMAIN.search(path.name)
    assert domain is not None, path
    return load_tools(DATA / "tau-bench" / f"{domain.group(1)}-tools.json")


@dataclass(frozen=True)
class Case:
    run: AgentRun
    plan: Rewrite
    new: AgentRun

    @property
    def label(self) -> str:
        assert self.run.source is not None
        return f"{Path(self.run.source.file).name}[{self.run.source.index}]"


@pytest.fixture(scope="module")
def runs() -> list[AgentRun]:
    out = []
    for path in RECORDED_FILES:
        for item in load_runs(path, tools=_tools_for(path)):
            assert not isinstance(item, InputError), item
            out.append(item)
    assert len(out) == 180
    return out


@pytest.fixture(scope="module")
def cases(runs: list[AgentRun]) -> list[Case]:
    out = []
    for run in runs:
        what = plan(run)
        out.append(Case(run, what, what.run(run)))
    return out


# --- what the checks read ------------------------------------------------------------------------------------


def _texts(run: AgentRun) -> Iterator[str]:
    """Every text of a run, JSON included as JSON (keys too): messages, calls, results, errors, tools, policy."""
    if run.system_instructions:
        yield run.system_instructions
    for tool in run.tool_definitions:
        yield json.dumps(tool.to_openai(), ensure_ascii=False)
    for step in run.steps:
        if isinstance(step, (UserMessage, AssistantMessage)):
            if step.content:
                yield step.content
            for call in step.tool_calls:
                yield call.name
                yield call.arguments_json()
        if isinstance(step, ToolExecution):
            yield step.name
            yield json.dumps(step.arguments, ensure_ascii=False)
            for text in (step.result, step.error):
                if text:
                    yield text


def _calls(run: AgentRun) -> Iterator[ToolCall]:
    for step in run.steps:
        if isinstance(step, (UserMessage, AssistantMessage)):
            yield from step.tool_calls


def _tool_names(run: AgentRun) -> set[str]:
    names = {t.name for t in run.tool_definitions} | {c.name for c in _calls(run)}
    return names | {s.name for s in run.steps if isinstance(s, ToolExecution)}


def _keys(value: JSONValue) -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def _schema_names(schema: Mapping[str, Any] | None) -> Iterator[str]:
    if not schema:
        return
    for name, sub in (schema.get("properties") or {}).items():
        yield name
        if isinstance(sub, Mapping):
            yield from _schema_names(sub)
            yield from _schema_names(sub.get("items"))
    yield from (r for r in schema.get("required") or () if isinstance(r, str))


def _argument_names(run: AgentRun) -> set[str]:
    """Argument names: of the calls, the executions and the tools' parameter schemas."""
    names: set[str] = set()
    for call in _calls(run):
        names.update(_keys(call.arguments or {}))
    for step in run.steps:
        if isinstance(step, ToolExecution):
            names.update(_keys(step.arguments or {}))
    for tool in run.tool_definitions:
        names.update(_schema_names(tool.parameters))
    return names


def _decoded(result: str | None) -> JSONValue:
    try:
        return json.loads(result) if result else None
    except ValueError:
        return None


def _pairs(old: JSONValue, new: JSONValue, key: str = "") -> Iterator[tuple[str, JSONValue, JSONValue]]:
    """(key, old leaf, new leaf) of two JSON values of the same shape (keys renamed, order kept)."""
    if isinstance(old, Mapping):
        assert isinstance(new, Mapping) and len(old) == len(new)
        for (k, v), w in zip(old.items(), new.values(), strict=True):
            yield from _pairs(v, w, str(k))
    elif isinstance(old, list):
        assert isinstance(new, list) and len(old) == len(new)
        for v, w in zip(old, new, strict=True):
            yield from _pairs(v, w, key)
    else:
        yield key, old, new


def _json_pairs(case: Case) -> Iterator[tuple[str, JSONValue, JSONValue]]:
    for a, b in zip(case.run.steps, case.new.steps, strict=True):
        if isinstance(a, ToolExecution):
            assert isinstance(b, ToolExecution)
            yield from _pairs(a.arguments, b.arguments)
            old, new = _decoded(a.result), _decoded(b.result)
            if isinstance(old, (Mapping, list)):
                yield from _pairs(old, new)


_ID_KEY = re.compile(r"(^|_)(ids?|number)$")


def _word(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w#]){re.escape(token.lstrip('#'))}(?!\w)", text) is not None


# --- the rewrite: consistent and complete --------------------------------------------------------------------


def test_steps_keep_their_indices_and_kinds(cases: list[Case]) -> None:
    for case in cases:
        assert [(s.index, s.kind) for s in case.new.steps] == [(s.index, s.kind) for s in case.run.steps]
        assert len(case.new.tool_definitions) == len(case.run.tool_definitions)


def test_no_original_tool_name_remains(cases: list[Case]) -> None:
    for case in cases:
        renamed = {old for old, new in case.plan.tools.items() if old != new}
        assert renamed, case.label
        assert not renamed & _tool_names(case.new), case.label
        text = "\n".join(_texts(case.new))
        left = [name for name in renamed if "_" in name and _word(text, name)]
        assert not left, (case.label, left)
        # And the calls still match their executions and definitions.
        defined = {t.name for t in case.new.tool_definitions}
        assert {c.name for c in _calls(case.new)} <= defined | {case.plan.tool(n) for n in _tool_names(case.run)}


def test_no_original_argument_name_remains(cases: list[Case]) -> None:
    for case in cases:
        renamed = {k for k in _argument_names(case.run) if case.plan.key(k) != k}
        assert renamed, case.label
        assert not renamed & _argument_names(case.new), (case.label, renamed & _argument_names(case.new))
        # Free text keeps its English ("your order"); names written as identifiers (snake_case, with digits) go.
        text = "\n".join(_texts(case.new))
        left = [k for k in renamed if re.search(r"[_\d]", k) and _word(text, k)]
        assert not left, (case.label, left)


def test_no_original_id_remains_and_ids_map_one_to_one(cases: list[Case]) -> None:
    mapped = 0
    for case in cases:
        mapping: dict[str, str] = {}
        for key, old, new in _json_pairs(case):
            if _ID_KEY.search(key) and isinstance(old, str):
                assert isinstance(new, str) and new != old, (case.label, key, old)
                assert mapping.setdefault(old, new) == new, (case.label, old, new, mapping[old])
        mapped += len(mapping)
        assert len(set(mapping.values())) == len(mapping), case.label  # distinct ids stay distinct
        assert all(case.plan.ids[old] == new for old, new in mapping.items())
        text = "\n".join(_texts(case.new))
        left = [old for old in case.plan.ids if len(old) >= 5 and _word(text, old)]
        assert not left, (case.label, left)
    assert mapped > 1000


def test_no_person_name_remains(cases: list[Case]) -> None:
    checked = 0
    for case in cases:
        names = set()
        for key, value, _ in _json_pairs(case):
            if key in ("first_name", "last_name") and isinstance(value, str):
                names.update(re.findall(r"[A-Za-z]{2,}", value))
        text = "\n".join(_texts(case.new))
        emails = " ".join(e.partition("@")[0] for e in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", text)).lower()
        for name in names:
            checked += 1
            assert not re.search(rf"\b{name}\b", text), (case.label, name)
            assert not re.search(rf"(?<![a-z]){name.lower()}(?![a-z])", emails), (case.label, name)
    assert checked > 300


def test_amounts_are_scaled_exactly(cases: list[Case]) -> None:
    prices = 0
    for case in cases:
        for key, old, new in _json_pairs(case):
            if isinstance(old, bool) or not isinstance(old, (int, float)):
                continue
            money = key in ("price", "amount", "balance") or (isinstance(old, float) and not old.is_integer())
            if money:
                # Exact to the cent (the data holds a few float artefacts such as 74.11999999999995).
                assert isinstance(new, (int, float)), (key, old, new)
                assert abs(Decimal(repr(new)) - 3 * Decimal(repr(old))) < Decimal("1e-9"), (key, old, new)
                prices += key == "price"
            elif key.endswith("baggages") or key in ("economy", "business", "basic_economy"):
                # Counts stay (the seats under "available_seats"; the prices under "prices" are scaled).
                assert new == old or new == 3 * old, (key, old, new)
        for a, b in zip(case.run.steps, case.new.steps, strict=True):
            if isinstance(a, (UserMessage, AssistantMessage)) and a.content:
                assert isinstance(b, (UserMessage, AssistantMessage)) and b.content
                shown = [Decimal(x.replace(",", "")) for x in re.findall(r"\$(\d[\d,]*(?:\.\d+)?)", a.content)]
                said = [Decimal(x.replace(",", "")) for x in re.findall(r"€(\d[\d,]*(?:\.\d+)?)", b.content)]
                assert said == [3 * x for x in shown], (case.label, a.index)
        assert not re.search(r"\$\s?\d", "\n".join(_texts(case.new))), case.label
    assert prices > 1000


def test_calculator_results_are_recomputed() -> None:
    run = AgentRun(
        steps=(
            ToolExecution(
                index=0, name="get_order", call_id="c0", arguments={"order_id": "#W1"}, result='{"price": 122}'
            ),
            ToolExecution(
                index=1, name="get_order", call_id="c1", arguments={"order_id": "#W2"}, result='{"price": 127.5}'
            ),
            ToolExecution(
                index=2, name="calculate", call_id="c2", arguments={"expression": "(122 + 127.5) * 2"}, result="499.0"
            ),
            ToolExecution(
                index=3, name="calculate", call_id="c3", arguments={"expression": "(13 - 11) + 3"}, result="5.0"
            ),
            AssistantMessage(index=4, content="That is $499 for two, or 499.0 dollars."),
        )
    )
    new = rewrite(run)
    calc, hours, message = new.steps[2], new.steps[3], new.steps[4]
    assert isinstance(calc, ToolExecution) and isinstance(hours, ToolExecution)
    assert calc.name == "compute" and calc.arguments == {"expression": "(366 + 382.5) * 2"} and calc.result == "1497.0"
    assert hours.arguments == {"expression": "(13 - 11) + 3"} and hours.result == "5.0"  # hours are not money
    assert isinstance(message, AssistantMessage)
    assert message.content == "That is €1497 for two, or 1497.0 euros."


def test_tool_definitions_and_policy_are_renamed() -> None:
    tool = ToolDefinition(
        name="cancel_pending_order",
        description="Cancel an order, such as '#W0000000'. Then call transfer_to_human_agents.",
        parameters={
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "description": "The order id, such as '#W0000000'."},
                "item_ids": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["order_id", "item_ids"],
        },
    )
    run = AgentRun(
        steps=(
            AssistantMessage(index=0, tool_calls=(ToolCall("c", "cancel_pending_order", {"order_id": "#W1234567"}),)),
            ToolExecution(index=1, name="cancel_pending_order", call_id="c", arguments={"order_id": "#W1234567"}),
        ),
        system_instructions="Use cancel_pending_order only for pending orders; transfer_to_human_agents otherwise.",
        tool_definitions=(tool, ToolDefinition(name="transfer_to_human_agents")),
    )
    what = plan(run)
    new = what.run(run)
    defined, handoff = new.tool_definitions
    assert handoff.name == "handoff_to_human_agents"
    assert defined.name == "void_pending_purchase" == new.steps[1].name  # type: ignore[union-attr]
    assert defined.parameters is not None
    assert list(defined.parameters["properties"]) == ["purchase_id", "article_ids"]
    assert defined.parameters["required"] == ["purchase_id", "article_ids"]
    assert defined.parameters["properties"]["article_ids"]["items"] == {"type": "string"}  # a schema keyword stays
    assert "#W0000000" not in json.dumps(defined.to_openai()) and what.ids["#W0000000"].startswith("PO-")
    assert new.system_instructions == (
        "Use void_pending_purchase only for pending orders; handoff_to_human_agents otherwise."
    )


def test_the_rewrite_is_deterministic(runs: list[AgentRun], cases: list[Case]) -> None:
    for run, case in zip(runs[::9], cases[::9], strict=True):
        assert rewrite(run) == case.new
        assert plan(run) == case.plan
    other = plan(runs[0], seed=1)
    assert other.tools == cases[0].plan.tools  # names do not depend on the seed
    assert set(other.ids) == set(cases[0].plan.ids) and other.ids != cases[0].plan.ids


def test_spearman() -> None:
    assert spearman([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 1.0
    assert spearman([0.0, 0.0, 1.0, 0.5], [0.1, 0.1, 0.9, 0.2]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


# --- the invariance of the verdicts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(runs: list[AgentRun]) -> InvarianceReport:
    engine = Engine(packs=PackLibrary.with_builtins(force="generic"))
    return invariance(engine, runs)


def _why(report: InvarianceReport) -> str:
    return "\n" + "\n".join(report.summary().splitlines()[:40])


def test_invariance_report_is_complete(report: InvarianceReport, runs: list[AgentRun]) -> None:
    assert report.runs == len(runs)
    identical = invariance(Engine(packs=PackLibrary.with_builtins(force="generic")), runs[:10], transform=lambda r: r)
    assert (identical.same_outcome, identical.same_failures, identical.spearman, identical.changed) == (1, 1, 1, ())


def test_outcomes_are_invariant(report: InvarianceReport) -> None:
    assert report.same_outcome >= TARGETS["same_outcome"], _why(report)


def test_failure_steps_are_invariant(report: InvarianceReport) -> None:
    assert report.same_failures >= TARGETS["same_failures"], _why(report)


def test_failure_scores_keep_their_ranks(report: InvarianceReport) -> None:
    assert report.spearman >= TARGETS["spearman"], _why(report)


def test_references_are_dropped_for_evaluation(runs: list[AgentRun]) -> None:
    # Reference-free: the rewritten run keeps (rewritten) answers, but invariance() evaluates without them.
    run = next(r for r in runs if r.reference is not None and r.reference.actions)
    new = rewrite(run)
    assert run.reference is not None and new.reference is not None
    assert new.reference.reward == run.reference.reward
    assert [a.name for a in new.reference.actions] == [plan(run).tool(a.name) for a in run.reference.actions]
    seen: list[AgentRun] = []

    class Spy:
        def evaluate(self, run: AgentRun) -> Any:
            seen.append(run)
            return Engine(packs=PackLibrary.with_builtins(force="generic")).evaluate(run)

    invariance(Spy(), [run])
    assert len(seen) == 2 and all(r.reference is None for r in seen)
    assert replace(seen[0], reference=None) == replace(run, reference=None)
