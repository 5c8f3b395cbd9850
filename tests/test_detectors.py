"""Each built-in detector on small conversations: it fires on the failure and stays quiet on the fix."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.evaluate.detectors import (
    CompletionDetector,
    ConfirmationDetector,
    GroundingDetector,
    IdentityDetector,
    LoopDetector,
    ModelOutputDetector,
    OncePerTargetDetector,
    PreconditionDetector,
    SchemaDetector,
    ToolErrorDetector,
    TransferDetector,
    TurnShapeDetector,
    WrongInformationDetector,
)
from otel_agent_eval.evaluate.engine import Evaluator
from otel_agent_eval.ingest.messages import messages_to_steps, parse_openai_message
from otel_agent_eval.model import AgentRun, ToolDefinition

POLICY = (
    "You are a shop agent. Authenticate the user identity by locating their user id via email before anything "
    "else. Before taking consequential actions you have to list the action detail and obtain explicit user "
    "confirmation (yes) to proceed. You should at most make one tool call at a time, and if you take a tool "
    "call, you should not respond to the user at the same time. Transfer to a human agent only if the request "
    "cannot be handled."
)
TOOLS = ToolDefinition.parse_list(
    [
        {
            "type": "function",
            "function": {
                "name": "find_user_id_by_email",
                "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_order",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "cancel_order",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "order_id": {"type": "string"},
                        "reason": {"enum": ["no longer needed", "ordered by mistake"]},
                    },
                    "required": ["order_id", "reason"],
                },
            },
        },
        {"type": "function", "function": {"name": "transfer_to_human_agents", "parameters": {"type": "object"}}},
    ]
)


def call(cid: str, name: str, **args: Any) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def ask(*calls: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


def result(cid: str, content: Any) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": cid,
        "content": content if isinstance(content, str) else json.dumps(content),
    }


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def say(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def run_of(*messages: dict[str, Any], policy: str = POLICY) -> AgentRun:
    parsed = [parse_openai_message(m, field=f"m[{i}]") for i, m in enumerate(messages)]
    _, steps = messages_to_steps(parsed)
    return AgentRun(steps=tuple(steps), system_instructions=policy, tool_definitions=TOOLS)


def found(detector: Evaluator, run: AgentRun) -> list[tuple[str, int, str]]:
    return [(f.mode, f.step, f.outcome) for f in Engine([detector]).evaluate(run).findings]


VERIFIED = [
    user("Hi, I'm ann@example.com."),
    ask(call("c0", "find_user_id_by_email", email="ann@example.com")),
    result("c0", "ann_1"),
]
GOOD_CANCEL = [
    *VERIFIED,
    user("Please cancel order #W1."),
    ask(call("c1", "get_order", order_id="#W1")),
    result("c1", {"order_id": "#W1", "status": "pending", "total": 59.9}),
    say("Order #W1 (59.90) is pending. Shall I cancel it with reason 'no longer needed'?"),
    user("Yes, please."),
    ask(call("c2", "cancel_order", order_id="#W1", reason="no longer needed")),
    result("c2", {"order_id": "#W1", "status": "cancelled"}),
    say("Your order #W1 has been cancelled; 59.90 will be refunded."),
]


def test_a_good_conversation_has_no_failure() -> None:
    ev = Engine().evaluate(run_of(*GOOD_CANCEL))
    assert ev.outcome == "success" and ev.findings == ()


def test_schema() -> None:
    bad = run_of(*VERIFIED, ask(call("c1", "cancel_order", order_id="#W1", reason="meh")), result("c1", "ok"))
    assert found(SchemaDetector(), bad) == [("wrong_arguments", 3, "terminal")]
    unknown = run_of(*VERIFIED, ask(call("c1", "delete_everything")), result("c1", "Error: no such tool"))
    assert found(SchemaDetector(), unknown) == [("wrong_tool", 3, "terminal")]
    fixed = run_of(
        *VERIFIED,
        ask(call("c1", "cancel_order", order_id="#W1", reason="meh")),
        result("c1", "Error: bad reason"),
        ask(call("c2", "cancel_order", order_id="#W1", reason="no longer needed")),
        result("c2", "ok"),
    )
    assert found(SchemaDetector(), fixed) == [("wrong_arguments", 3, "recovered")]


def test_grounding() -> None:
    invented = run_of(*VERIFIED, user("Cancel my last order."), ask(call("c1", "get_order", order_id="#W999")))
    assert found(GroundingDetector(), invented) == [("wrong_arguments", 4, "terminal")]
    assert found(GroundingDetector(), run_of(*GOOD_CANCEL)) == []
    dated = run_of(user("Book me on May 20th."), ask(call("c1", "get_order", order_id="2024-05-20")))
    assert found(GroundingDetector(), dated) == []


def test_tool_errors() -> None:
    unfixed = run_of(
        *VERIFIED,
        ask(call("c1", "cancel_order", order_id="#W1", reason="no longer needed")),
        result("c1", "Error: payment amount does not add up"),
    )
    assert found(ToolErrorDetector(), unfixed) == [("wrong_arguments", 3, "terminal")]
    told = run_of(
        *VERIFIED,
        ask(call("c1", "cancel_order", order_id="#W1", reason="no longer needed")),
        result("c1", "Error: Non-pending order cannot be cancelled"),
        say("Unfortunately the order cannot be cancelled: it has already shipped."),
    )
    assert found(ToolErrorDetector(), told) == [("wrong_action", 3, "recovered")]
    system = run_of(
        *VERIFIED, ask(call("c1", "get_order", order_id="#W1")), result("c1", "Error: 503 service unavailable")
    )
    assert found(ToolErrorDetector(), system) == [("tool_failure", 3, "terminal")]


def test_loop() -> None:
    same = [ask(call(f"c{i}", "get_order", order_id="#W1")) for i in range(3)]
    looping = run_of(
        *VERIFIED,
        user("Status of #W1?"),
        same[0],
        result("c0", "pending"),
        same[1],
        result("c1", "pending"),
        same[2],
        result("c2", "pending"),
    )
    assert found(LoopDetector(), looping) == [("loop", 6, "terminal")]
    assert found(LoopDetector(), run_of(*GOOD_CANCEL)) == []


def test_confirmation() -> None:
    unconfirmed = run_of(
        *VERIFIED,
        user("Please cancel order #W1."),
        ask(call("c2", "cancel_order", order_id="#W1", reason="no longer needed")),
        result("c2", "ok"),
    )
    assert found(ConfirmationDetector(), unconfirmed) == [("policy_violation", 4, "terminal")]
    refused = run_of(
        *GOOD_CANCEL[:7], user("No, wait."), ask(call("c2", "cancel_order", order_id="#W1", reason="no longer needed"))
    )
    assert found(ConfirmationDetector(), refused) == [("policy_violation", 8, "terminal")]
    assert found(ConfirmationDetector(), run_of(*GOOD_CANCEL)) == []
    no_rule = run_of(
        *unconfirmed.steps and [user("x"), ask(call("c", "cancel_order", order_id="1"))], policy="Be nice."
    )
    assert found(ConfirmationDetector(), no_rule) == []


def test_confirmation_covers_the_details_that_run() -> None:
    confirmed = GOOD_CANCEL[:8]  # the agent listed the details, the user said yes
    failed = [
        ask(call("c2", "cancel_order", order_id="#W1", reason="no longer needed")),
        result("c2", "Error: the order is locked"),
    ]
    changed = run_of(*confirmed, *failed, ask(call("c3", "cancel_order", order_id="#W1", reason="ordered by mistake")))
    [finding] = Engine([ConfirmationDetector()]).evaluate(changed).findings
    assert (finding.mode, finding.step, finding.confidence) == ("policy_violation", 10, 0.6)
    assert "reason" in finding.critique and "order_id" not in finding.critique
    same = run_of(*confirmed, *failed, ask(call("c3", "cancel_order", order_id="w1 ", reason="No longer needed")))
    assert found(ConfirmationDetector(), same) == []  # only spelling differs: still what the user agreed to
    asked_again = run_of(
        *confirmed,
        *failed,
        say("That failed; shall I cancel it with reason 'ordered by mistake' instead?"),
        user("Yes."),
        ask(call("c3", "cancel_order", order_id="#W1", reason="ordered by mistake")),
    )
    assert found(ConfirmationDetector(), asked_again) == []


def test_confirmation_needs_the_amount_said() -> None:
    def refund(amount: float) -> AgentRun:
        return run_of(
            *GOOD_CANCEL[:8],
            ask(call("c2", "cancel_order", order_id="#W1", reason="no longer needed", refund_amount=amount)),
        )

    assert found(ConfirmationDetector(), refund(59.9)) == []  # "Order #W1 (59.90)" was said before the yes
    [finding] = Engine([ConfirmationDetector()]).evaluate(refund(12.5)).findings
    assert finding.confidence == 0.55 and "refund_amount=12.5" in finding.critique


def test_identity() -> None:
    early = run_of(user("Where is #W1?"), ask(call("c1", "get_order", order_id="#W1")), result("c1", "pending"))
    assert found(IdentityDetector(), early) == [("policy_violation", 1, "terminal")]
    assert found(IdentityDetector(), run_of(*GOOD_CANCEL)) == []


def test_turn_shape() -> None:
    both = run_of(*VERIFIED, ask(call("c1", "get_order", order_id="#W1"), content="Let me check."))
    assert found(TurnShapeDetector(), both) == [("policy_violation", 3, "terminal")]
    two = run_of(*VERIFIED, ask(call("c1", "get_order", order_id="#W1"), call("c2", "get_order", order_id="#W2")))
    assert found(TurnShapeDetector(), two) == [("policy_violation", 3, "terminal")]


RETAIL = (
    "# Retail agent policy\n"
    "As a retail agent, you can help users cancel or modify pending orders, return or exchange delivered orders."
)


def test_preconditions_from_the_retail_pack() -> None:
    messages = [
        user("Cancel #W1."),
        ask(call("c1", "get_order_details", order_id="#W1")),
        result("c1", {"order_id": "#W1", "status": "delivered"}),
        say("Shall I cancel #W1?"),
        user("yes"),
        ask(call("c2", "cancel_pending_order", order_id="#W1", reason="no longer needed")),
        result("c2", {"order_id": "#W1", "status": "cancelled"}),
    ]
    assert found(PreconditionDetector(), run_of(*messages, policy=RETAIL)) == [("wrong_action", 5, "terminal")]
    pending = [*messages[:2], result("c1", {"order_id": "#W1", "status": "pending"}), *messages[3:]]
    assert found(PreconditionDetector(), run_of(*pending, policy=RETAIL)) == []


def test_once_per_target() -> None:
    twice = run_of(
        user("Swap two items in #W1."),
        ask(call("c1", "modify_pending_order_items", order_id="#W1", item_ids=["1"], new_item_ids=["2"])),
        result("c1", "ok"),
        ask(call("c2", "modify_pending_order_items", order_id="#W1", item_ids=["3"], new_item_ids=["4"])),
        result("c2", "ok"),
        policy=RETAIL,
    )
    assert found(OncePerTargetDetector(), twice) == [("wrong_action", 3, "terminal")]


def test_wrong_information() -> None:
    claim = run_of(*VERIFIED, user("Cancel #W1."), say("Your order #W1 has been cancelled."))
    assert ("wrong_information", 4, "terminal") in found(WrongInformationDetector(), claim)
    amount = run_of(*GOOD_CANCEL[:7], say("Your refund will be $64.90."))
    assert found(WrongInformationDetector(), amount) == [("wrong_information", 7, "terminal")]
    arithmetic = run_of(*GOOD_CANCEL[:7], say("That is $119.80 for both."))  # 2 x 59.90
    assert found(WrongInformationDetector(), arithmetic) == []
    assert found(WrongInformationDetector(), run_of(*GOOD_CANCEL)) == []


def test_a_claim_is_checked_against_the_calls_of_the_tool_that_carries_it() -> None:
    from otel_agent_eval.evaluate.findings import Evaluation

    def claim_after(*steps: dict[str, Any]) -> list[tuple[str, int, str, str]]:
        run = run_of(*VERIFIED, user("Revoke booking BK-77 please."), *steps, say("Booking BK-77 has been revoked."))
        run = replace(run, tool_definitions=(*run.tool_definitions, ToolDefinition("revoke_booking", "Revoke it.")))
        return [
            (f.mode, f.step, f.outcome, f.evidence_kind)
            for f in Engine([WrongInformationDetector()]).evaluate(run).findings
        ]

    # The run's own tool names say which tool carries "revoked": no list of verbs of any domain.
    failed = [
        ask(call("c1", "revoke_booking", booking_id="BK-77")),
        {"role": "tool", "tool_call_id": "c1", "content": "Error: too late"},
    ]
    assert claim_after(*failed) == [("wrong_information", 6, "terminal", "structural")]
    ok = [ask(call("c1", "revoke_booking", booking_id="BK-77")), result("c1", "ok")]
    assert claim_after(*ok) == []
    assert claim_after() == [("wrong_information", 4, "terminal", "textual")]  # never called: a suspicion
    # A verb no tool carries is nothing to check ("found", "noted").
    run = run_of(*VERIFIED, say("I have found your booking."))
    assert found(WrongInformationDetector(), run) == []
    evaluation = Engine([WrongInformationDetector()]).evaluate(
        run_of(*VERIFIED, user("Revoke booking BK-77 please."), say("Booking BK-77 has been revoked."))
    )
    assert isinstance(evaluation, Evaluation) and evaluation.outcome == "success"


def test_transfer() -> None:
    handed_off = run_of(*VERIFIED, user("Cancel #W1."), ask(call("c1", "transfer_to_human_agents")), result("c1", "ok"))
    assert found(TransferDetector(), handed_off) == [("unnecessary_transfer", 4, "terminal")]
    asked = run_of(*VERIFIED, user("I want a human."), ask(call("c1", "transfer_to_human_agents")), result("c1", "ok"))
    assert found(TransferDetector(), asked) == []


def test_completion() -> None:
    promised = run_of(*VERIFIED, user("Cancel #W1."), say("I will now cancel your order."), user("Thanks."))
    assert ("missing_action", 4, "terminal") in found(CompletionDetector(), promised)
    confirmed = run_of(*GOOD_CANCEL[:7], user("Yes, please."))
    assert ("missing_action", 7, "terminal") in found(CompletionDetector(), confirmed)
    assert found(CompletionDetector(), run_of(*GOOD_CANCEL)) == []
    prefix = Engine([CompletionDetector()]).evaluate(promised, complete=False)
    assert prefix.findings == ()  # an unfinished run has not ended with anything undone


def test_model_output() -> None:
    empty = run_of(*VERIFIED, say(""), say("Sorry, how can I help?"))
    assert found(ModelOutputDetector(), empty) == [("model_failure", 3, "recovered")]


def test_misread_output() -> None:
    from otel_agent_eval.evaluate.detectors import MisreadOutputDetector

    catalogue = {
        "product_id": "p1",
        "variants": {
            "item_2002": {"item_id": "item_2002", "available": False},
            "item_3003": {"item_id": "item_3003", "available": True},
        },
    }

    def order_holding(item: str) -> list[dict[str, Any]]:
        return [
            user(f"Swap item {item} in #W1 for another colour."),
            ask(call("c0", "get_order_details", order_id="#W1")),
            result("c0", {"order_id": "#W1", "status": "pending", "items": [{"item_id": item}]}),
            ask(call("c1", "get_product_details", product_id="p1")),
            result("c1", catalogue),
            say("Shall I swap it?"),
            user("yes"),
        ]

    def swap(old: str, new: str, **names: str) -> AgentRun:  # names: argument names to use
        args = {names.get("order", "order_id"): "#W1", "item_ids": [old], names.get("acquired", "new_item_ids"): [new]}
        return run_of(
            *order_holding(old),
            ask(call("c2", "modify_pending_order_items", **args)),
            result("c2", "ok"),
            policy=RETAIL,
        )

    assert found(MisreadOutputDetector(), swap("item_1001", "item_2002")) == [("misread_output", 7, "terminal")]
    # Which argument acquires is read from the results (the order already holds the item it gives up), not
    # from argument names: the same with any name for the argument.
    assert found(MisreadOutputDetector(), swap("item_1001", "item_2002", acquired="replacements")) == [
        ("misread_output", 7, "terminal")
    ]
    available = swap("item_2002", "item_3003")
    assert found(MisreadOutputDetector(), available) == []  # giving up an unavailable item is fine


def test_clarification() -> None:
    from otel_agent_eval.evaluate.detectors import ClarificationDetector

    given = [
        user("I'm ann@example.com."),
        ask(call("c1", "find_user_id_by_email", email="ann@example.com")),
        result("c1", "ann_1"),
    ]
    again = run_of(*given, say("Could you give me your email address?"))
    assert found(ClarificationDetector(), again) == [("clarification_failure", 3, "recovered")]
    retry = run_of(*given, say("That email was not found; could you double-check your email?"))
    assert found(ClarificationDetector(), retry) == []
    # The detail is named by the tool's own argument, whatever it is called: no list of kinds of detail.
    renamed = [
        user("My member number is ZX-4411."),
        ask(call("c1", "lookup_member", member_number="ZX-4411")),
        result("c1", "ok"),
    ]
    assert found(ClarificationDetector(), run_of(*renamed, say("What is your member number?"))) == [
        ("clarification_failure", 3, "recovered")
    ]
    # Never used by a call: the agent may well ask (it had no use for it yet).
    assert found(ClarificationDetector(), run_of(user("I'm ann@example.com."), say("Your email, please?"))) == []


AIRLINE = "# Airline Agent Policy\nAs an airline agent, you can help users book, modify, or cancel flight reservations."
RESERVATION = {
    "reservation_id": "R1",
    "cabin": "basic_economy",
    "flights": [{"flight_number": "HAT001", "date": "2024-05-20"}],
    "total_baggages": 2,
}


def _airline_write(name: str, **args: Any) -> AgentRun:
    return run_of(
        user("Change reservation R1 please."),
        ask(call("c1", "get_reservation_details", reservation_id="R1")),
        result("c1", RESERVATION),
        say("Shall I make this change to R1?"),
        user("yes"),
        ask(call("c2", name, reservation_id="R1", **args)),
        result("c2", "ok"),
        policy=AIRLINE,
    )


def test_preconditions_with_conditions_on_arguments() -> None:
    changed = _airline_write(
        "update_reservation_flights", cabin="basic_economy", flights=[{"flight_number": "HAT002", "date": "2024-05-20"}]
    )
    assert found(PreconditionDetector(), changed) == [("wrong_action", 5, "terminal")]
    cabin_only = _airline_write(
        "update_reservation_flights", cabin="economy", flights=[{"flight_number": "HAT001", "date": "2024-05-20"}]
    )
    assert found(PreconditionDetector(), cabin_only) == []  # a cabin change on the same flights is allowed
    fewer_bags = _airline_write("update_reservation_baggages", total_baggages=1, nonfree_baggages=0)
    assert found(PreconditionDetector(), fewer_bags) == [("wrong_action", 5, "terminal")]
    more_bags = _airline_write("update_reservation_baggages", total_baggages=3, nonfree_baggages=1)
    assert found(PreconditionDetector(), more_bags) == []


def test_argument_rules_from_the_pack() -> None:
    from otel_agent_eval.evaluate.detectors import ArgumentRuleDetector

    def booking(*payments: str) -> AgentRun:
        methods = [{"payment_id": p, "amount": 10} for p in payments]
        return run_of(
            user("Book it."),
            ask(call("c1", "book_reservation", payment_methods=methods)),
            result("c1", "ok"),
            policy=AIRLINE,
        )

    assert found(ArgumentRuleDetector(), booking("certificate_1", "certificate_2")) == [
        ("policy_violation", 1, "terminal")
    ]
    assert found(ArgumentRuleDetector(), booking("certificate_1", "credit_card_1", "gift_card_1")) == []
