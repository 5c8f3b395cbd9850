"""Fuzzing the evaluation service (``otel_agent_eval.v1.EvaluationService``): a verdict or INVALID_ARGUMENT.

Random ``EvaluateStepRequest``s -- roles of every spelling, tool calls whose ``arguments_json`` is not JSON,
not an object, nested 100 000 levels deep or holds lone surrogates, tool definitions whose
``parameters_json`` is no schema (or a schema that refers to itself) -- get a response or ``INVALID_ARGUMENT``
naming the field, never ``UNKNOWN`` or ``INTERNAL``: through the servicer with a stand-in context, and through
a real gRPC server on loopback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from fuzzing import fuzz
from hypothesis import example, given
from hypothesis import strategies as st

from otel_agent_eval.hook import Guard
from otel_agent_eval.hook._proto import evaluation_pb2 as pb
from otel_agent_eval.hook._proto import evaluation_pb2_grpc as pb_grpc
from otel_agent_eval.hook.service import EvaluationServicer, add_evaluation_service

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "description": "Cancel a pending order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "reason": {"enum": ["no longer needed"]}},
                "required": ["order_id"],
            },
        },
    }
]
SERVICER = EvaluationServicer(Guard(tools=TOOLS))

text = st.text(max_size=12)  # protobuf strings are UTF-8: no lone surrogates on the wire
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def deep(depth: int, inner: str = "1") -> str:
    return '{"a": ' * depth + inner + "}" * depth


json_texts = st.one_of(
    st.just(""),
    text,
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(["order_id", "reason", "x"]), json_values, max_size=3).map(json.dumps),
    st.integers(1, 100_000).map(deep),
    st.integers(1, 100_000).map(lambda n: "[" * n),
    st.sampled_from(['{"order_id": "\\ud800"}', '{"\\udfff": 1}', '{"order_id": ' + "9" * 5000 + "}"]),
)
SCHEMAS = [
    {"$ref": "#"},  # refers to itself: validating anything with it recurses for ever
    {"type": "object", "properties": {"a": {"$ref": "#"}}},
    {"type": 5},
    {"properties": []},
    {"required": "order_id"},
    {"type": "object", "properties": {"order_id": {"pattern": "("}}},
    {"$ref": "#/definitions/missing"},
    {"$ref": "https://example.invalid/schema.json"},
]
schema_texts = st.one_of(json_texts, st.sampled_from(SCHEMAS).map(json.dumps), st.integers(1, 150).map(deep))
roles = st.sampled_from(["system", "user", "assistant", "tool", "", "robot", "Assistant"])


@st.composite
def messages(draw: st.DrawFn) -> pb.Message:
    message = pb.Message(
        role=draw(roles),
        tool_call_id=draw(st.sampled_from(["", "c1", "c2"]) | text),
        name=draw(st.sampled_from(["", "cancel_order"]) | text),
        is_error=draw(st.booleans()),
    )
    if draw(st.booleans()):
        message.content = draw(text | json_texts)
    for _ in range(draw(st.integers(0, 2))):
        message.tool_calls.add(
            id=draw(st.sampled_from(["", "c1", "c2"])),
            name=draw(st.sampled_from(["", "cancel_order", "delete_everything"]) | text),
            arguments_json=draw(json_texts),
        )
    return message


@st.composite
def requests(draw: st.DrawFn) -> pb.EvaluateStepRequest:
    request = pb.EvaluateStepRequest(
        history=draw(st.lists(messages(), max_size=5)),
        agent_name=draw(text),
        trace_id=draw(st.binary(max_size=17)),
        span_id=draw(st.binary(max_size=9)),
    )
    if draw(st.integers(0, 4)):
        request.proposed.CopyFrom(draw(messages()))
    for _ in range(draw(st.integers(0, 2))):
        request.tools.add(
            name=draw(st.sampled_from(["", "cancel_order", "lookup"]) | text),
            description=draw(text),
            parameters_json=draw(schema_texts),
        )
    if draw(st.booleans()):
        request.policy = draw(text)
    return request


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class Context:
    """A stand-in for ``grpc.ServicerContext``: ``abort`` raises, as gRPC's does."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def request_with(
    arguments_json: str = "{}", parameters_json: str = "", proposed: bool = True
) -> pb.EvaluateStepRequest:
    request = pb.EvaluateStepRequest(history=[pb.Message(role="user", content="Cancel #W1")])
    if proposed:
        request.proposed.tool_calls.add(id="c1", name="cancel_order", arguments_json=arguments_json)
    if parameters_json:
        request.tools.add(name="cancel_order", parameters_json=parameters_json)
    return request


# The crash inputs found so far. 100 000-deep arguments_json: UNKNOWN (a RecursionError in json.loads).
DEEP_ARGUMENTS = request_with(deep(100_000))
DEEP_PARAMETERS = request_with(parameters_json="[" * 100_000)
SELF_REFERRING_SCHEMA = request_with('{"order_id": "#W1"}', json.dumps({"$ref": "#"}))


def check(request: pb.EvaluateStepRequest) -> None:
    """A response, or INVALID_ARGUMENT naming a field; nothing else escapes the servicer."""
    try:
        response = SERVICER.EvaluateStep(request, Context())  # type: ignore[arg-type]
    except Aborted as exc:
        assert exc.code == grpc.StatusCode.INVALID_ARGUMENT, exc
        assert exc.details
        return
    assert response.verdict in (pb.VERDICT_ALLOW, pb.VERDICT_REVISE)
    response.SerializeToString()


@fuzz(300)
@given(requests())
@example(DEEP_ARGUMENTS)
@example(DEEP_PARAMETERS)
@example(SELF_REFERRING_SCHEMA)
@example(request_with('{"order_id": "\\ud800"}'))
@example(request_with('{"order_id": ' + "9" * 5000 + "}"))
def test_random_requests_get_a_verdict_or_invalid_argument(request: pb.EvaluateStepRequest) -> None:
    logging.disable(logging.WARNING)
    try:
        check(request)
    finally:
        logging.disable(logging.NOTSET)


def test_deep_arguments_are_invalid_argument_naming_the_field() -> None:
    with pytest.raises(Aborted) as caught:
        SERVICER.EvaluateStep(DEEP_ARGUMENTS, Context())  # type: ignore[arg-type]
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details.startswith(
        "proposed.tool_calls[0].arguments_json: not JSON: nested deeper than 200 levels"
    )
    with pytest.raises(Aborted) as caught:
        SERVICER.EvaluateStep(DEEP_PARAMETERS, Context())  # type: ignore[arg-type]
    assert caught.value.details.startswith("tools[0].parameters_json: not JSON: nested deeper than 200 levels")


# --- through a real server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[pb_grpc.EvaluationServiceStub]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_evaluation_service(server, Guard(tools=TOOLS))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.EvaluationServiceStub(channel)  # type: ignore[no-untyped-call]
    server.stop(None)


def status_of(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@fuzz(40)
@given(requests())
@example(DEEP_ARGUMENTS)
@example(SELF_REFERRING_SCHEMA)
def test_a_real_server_answers_ok_or_invalid_argument(stub: pb_grpc.EvaluationServiceStub, request: Any) -> None:
    logging.disable(logging.WARNING)
    try:
        assert status_of(lambda: stub.EvaluateStep(request, timeout=30)) in (
            grpc.StatusCode.OK,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert status_of(lambda: list(stub.EvaluateSession(iter([request, request]), timeout=30))) in (
            grpc.StatusCode.OK,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    finally:
        logging.disable(logging.NOTSET)
