"""Policy packs: the format is checked, packs are chosen by the policy text, user packs extend the built-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA

from otel_agent_eval.errors import InputError
from otel_agent_eval.evaluate import PackLibrary, PolicyPack
from otel_agent_eval.evaluate.policy import builtin_packs


def test_builtin_packs_are_valid_and_chosen_by_policy_text() -> None:
    names = {p.name for p in builtin_packs()}
    assert {"generic", "tau-retail", "tau-airline"} <= names
    library = PackLibrary.with_builtins()
    retail = (DATA / "tau-bench" / "retail-policy.md").read_text()
    airline = (DATA / "tau-bench" / "airline-policy.md").read_text()
    assert library.choose(retail).name == "tau-retail"
    assert library.choose(airline).name == "tau-airline"
    assert library.choose("You are a helpful travel assistant.").name == "generic"
    assert library.choose(None).name == "generic"


def test_retail_rules() -> None:
    policy = PackLibrary.with_builtins().policy_for((DATA / "tau-bench" / "retail-policy.md").read_text())
    assert policy.is_write("cancel_pending_order") and not policy.is_write("get_order_details")
    assert policy.is_identity("find_user_id_by_email") and policy.is_transfer("transfer_to_human_agents")
    assert policy.identity_before_access and policy.confirm_before_write
    assert policy.one_tool_call_per_turn and policy.no_message_with_tool_call
    assert {r.field for r in policy.preconditions} == {"status"}


def test_generic_pack_reads_rules_from_the_policy_text() -> None:
    library = PackLibrary.with_builtins()
    strict = library.policy_for("Always obtain explicit confirmation before changes. Make one tool call at a time.")
    assert strict.confirm_before_write and strict.one_tool_call_per_turn and not strict.identity_before_access
    assert strict.is_write("update_address") and strict.is_write("book_flight") and not strict.is_write("get_flight")
    assert strict.is_transfer("transfer_to_human_agents") and not strict.is_write("transfer_to_human_agents")
    lax = library.policy_for("Be helpful.")
    assert not (lax.confirm_before_write or lax.one_tool_call_per_turn or lax.identity_before_access)


def test_a_team_pack_extends_generic(tmp_path: Path) -> None:
    pack = tmp_path / "bank.yaml"
    pack.write_text(
        "name: bank\nextends: generic\npriority: 5\nmatch: {all: ['bank assistant']}\n"
        "tools: {writes: {names: [wire_money]}, identity: {names: [check_pin]}}\n"
        "rules: {identity_before_access: {enabled: true}}\n"
    )
    library = PackLibrary.with_builtins([pack])
    policy = library.policy_for("You are a bank assistant. Confirm before any transfer.")
    assert policy.pack == "bank"
    assert policy.is_write("wire_money") and policy.is_write("cancel_card")  # its own, and generic's patterns
    assert policy.identity_before_access and policy.confirm_before_write  # its rule, and generic's from the text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nrules: {confirm_before_write: {enabled: maybe}}\n", "rules/confirm_before_write/enabled"),
        ("name: x\ntools: {writes: [a, b]}\n", "tools/writes"),
        ("name: x\nwhatever: 1\n", "(top level)"),
        ("description: no name\n", "(top level)"),
        ("name: [unclosed\n", "not YAML"),
    ],
)
def test_bad_packs_name_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    pack = tmp_path / "bad.yaml"
    pack.write_text(text)
    with pytest.raises(InputError) as error:
        PolicyPack.load(pack)
    assert str(pack) in str(error.value) and message in str(error.value)


def test_extends_cycles_and_unknown_bases_are_errors() -> None:
    a = PolicyPack.from_mapping({"name": "a", "extends": "b"})
    b = PolicyPack.from_mapping({"name": "b", "extends": "a"})
    generic = next(p for p in builtin_packs() if p.name == "generic")
    with pytest.raises(InputError, match="extends itself"):
        PackLibrary([generic, a, b])
    with pytest.raises(InputError, match="unknown pack 'nope'"):
        PackLibrary([generic, PolicyPack.from_mapping({"name": "c", "extends": "nope"})])


def test_preconditions_need_a_field_or_conditions_and_argument_schemas_must_be_valid(tmp_path: Path) -> None:
    pack = tmp_path / "p.yaml"
    pack.write_text("name: x\nrules: {preconditions: [{tools: [a], target: id}]}\n")
    with pytest.raises(InputError, match="rules/preconditions/0"):
        PolicyPack.load(pack)
    pack.write_text("name: x\nrules: {preconditions: [{tools: [a], target: id, when: [{state: s, nearly: 1}]}]}\n")
    with pytest.raises(InputError, match="rules/preconditions/0/when/0"):
        PolicyPack.load(pack)
    pack.write_text("name: x\nrules: {argument_rules: [{tools: [a], schema: {type: 12}}]}\n")
    with pytest.raises(InputError, match="rules/argument_rules/0/schema: not a valid JSON Schema"):
        PolicyPack.load(pack)


def test_a_tool_definition_says_what_it_does_before_its_name_is_guessed_at() -> None:
    from otel_agent_eval.evaluate import Engine
    from otel_agent_eval.model import AgentRun, ToolDefinition

    tools = (
        ToolDefinition.from_openai(
            {"name": "purge_cache", "inputSchema": {}, "annotations": {"destructiveHint": True}}
        ),
        ToolDefinition.from_openai({"name": "update_feed_view", "annotations": {"readOnlyHint": True}}),
        ToolDefinition("update_profile"),
    )
    policy = Engine(plugins=False).context(AgentRun(steps=(), tool_definitions=tools)).policy
    # MCP annotations first (purge is no verb the generic pack knows; update_feed_view says it reads), then
    # the generic pack's guess from the name.
    assert [policy.is_write(t.name) for t in tools] == [True, False, True]


def test_tool_roles_read_names_in_any_case_style_and_descriptions_in_the_third_person() -> None:
    from otel_agent_eval.evaluate import Engine
    from otel_agent_eval.model import AgentRun, ToolDefinition

    tools = {
        "getOrderDetails": None,  # camelCase read
        "get-account-balance": None,  # kebab-case read
        "cancelOrder": None,  # camelCase write
        "order_details": "Returns the details of an order.",  # a description that says it reads
        "authenticate_user": None,  # an identity check is not a write
        "lookup_customer": None,  # nor is a lookup of the other party
        "get_user_details": None,  # reading an account is not an identity check
        "get_paid": None,  # "paid" is not "id": a read, not an identity check
    }
    defs = tuple(ToolDefinition(name, description) for name, description in tools.items())
    run = AgentRun(steps=(), tool_definitions=defs, system_instructions="Authenticate the user first.")
    policy = Engine(calibration=None).context(run).policy
    writes = {name for name in tools if policy.is_write(name)}
    identity = {name for name in tools if policy.is_identity(name)}
    assert writes == {"cancelOrder"}
    assert identity == {"authenticate_user", "lookup_customer"}
