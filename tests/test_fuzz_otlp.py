"""Fuzzing the span readers and the OTLP JSON decoder: every input is read, or refused with a ValueError.

(a) Arbitrary bytes and random ``ExportTraceServiceRequest``s -- ids of any length, shared and self-parenting
    spans, cycles of parents, attribute values of every kind (bytes, arrays, maps, deep nesting), random GenAI
    messages in ``gen_ai.input.messages`` / ``gen_ai.output.messages`` as JSON text and as structured values --
    go through ``runs_from_request`` and ``Engine().evaluate`` without an exception, and the runs' results
    serialise as JSON written in UTF-8.
(b) Random JSON text (deep nesting, lone surrogates, truncation, random OTLP-shaped documents) given to
    ``request_from_json`` raises nothing but ``ValueError``.

Derandomized and bounded (``max_examples``) so that CI runs the same examples in a few seconds; the crashes
found so far are explicit examples.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import pytest
from fuzzing import fuzz
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_agent_eval import semconv as sc
from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.jsonfile import MAX_DEPTH, loads
from otel_agent_eval.ingest.span_record import records_from_request
from otel_agent_eval.ingest.spans import runs_from_records, runs_from_request
from otel_agent_eval.model import AssistantMessage
from otel_agent_eval.otlp_json import request_from_json, request_to_json
from otel_agent_eval.tree import render_trace

FUZZ = fuzz(120)
ENGINE = Engine()

# --- strategies ---------------------------------------------------------------------------------------------

# Text with lone surrogates and other characters that UTF-8 encoders refuse (for JSON text, never for protobuf
# strings, which hold valid UTF-8 only).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
protobuf_text = st.text(max_size=12)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def deep_json(depth: int, *, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


tool_call_parts = st.fixed_dictionaries(
    {"type": st.just("tool_call")},
    optional={
        "id": st.none() | protobuf_text | st.integers(),
        "name": st.sampled_from(["get_order", "cancel_order", ""]) | json_values,
        "arguments": json_values | st.just('{"order_id": "#W1"}') | st.just(deep_json(100_000)),
    },
)
response_parts = st.fixed_dictionaries(
    {"type": st.just("tool_call_response")},
    optional={"id": st.none() | protobuf_text | st.integers(), "response": json_values},
)
text_parts = st.fixed_dictionaries({"type": st.sampled_from(["text", "reasoning"])}, optional={"content": json_values})
parts = st.lists(tool_call_parts | response_parts | text_parts | json_values, max_size=4)
genai_messages = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["user", "assistant", "tool", "system", "robot"]) | json_values,
        "parts": parts | json_values,
        "content": json_values,
        "tool_calls": st.lists(json_values, max_size=2) | json_values,
        "name": json_values,
        "finish_reason": json_values,
    },
)


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four: spans of odd values everywhere would hold no step to evaluate."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: good if ok else odd)


call_ids = st.sampled_from(["c1", "c2", ""])
tool_names = st.sampled_from(["get_order", "cancel_order"])
plausible_parts = st.one_of(
    st.builds(lambda t: {"type": "text", "content": t}, any_text | st.just('{"message": "Done."}')),
    st.builds(
        lambda i, n, a: {"type": "tool_call", "id": i, "name": n, "arguments": a},
        call_ids,
        tool_names,
        mostly(st.dictionaries(st.sampled_from(["order_id", "reason"]), json_values, max_size=2), json_values),
    ),
    st.builds(lambda i, r: {"type": "tool_call_response", "id": i, "response": r}, call_ids, json_values),
    st.builds(lambda t: {"type": "reasoning", "content": t}, any_text),
)
plausible_messages = st.builds(
    lambda role, parts: {"role": role, "parts": parts},
    st.sampled_from(["user", "assistant", "tool", "system"]),
    st.lists(plausible_parts, min_size=1, max_size=3),
)
message_lists = st.lists(mostly(plausible_messages, genai_messages | json_values), max_size=4)


def to_any_value(value: Any) -> AnyValue:
    """A JSON-like value as an OTLP AnyValue (bytes kept as bytes_value)."""
    out = AnyValue()
    if value is None:
        return out
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = max(min(value, 2**63 - 1), -(2**63))
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, str):
        out.string_value = value.encode("utf-8", "replace").decode("utf-8")
    elif isinstance(value, list):
        out.array_value.values.extend(to_any_value(v) for v in value)
    elif isinstance(value, dict):
        for key, item in value.items():
            out.kvlist_value.values.add(key=str(key).encode("utf-8", "replace").decode(), value=to_any_value(item))
    return out


def nested_any_value(depth: int, kind: str) -> AnyValue:
    """An AnyValue nested ``depth`` levels (protobuf refuses more than about 100 message levels)."""
    value = AnyValue(string_value="x")
    for _ in range(depth):
        outer = AnyValue()
        if kind == "array":
            outer.array_value.values.append(value)
        else:
            outer.kvlist_value.values.add(key="k", value=value)
        value = outer
    return value


scalar_any = st.builds(
    to_any_value, st.none() | st.booleans() | st.integers() | st.floats() | protobuf_text | st.binary(max_size=8)
)
any_values = st.recursive(
    scalar_any,
    lambda inner: (
        st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3))
        | st.builds(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])),
            st.lists(st.tuples(protobuf_text, inner), max_size=3),
        )
    ),
    max_leaves=8,
) | st.builds(nested_any_value, st.integers(1, 30), st.sampled_from(["array", "kvlist"]))

# JSON text for attributes that hold JSON: valid (with bytes nowhere), deep, truncated, with surrogate escapes.
json_text = st.one_of(
    json_values.map(json.dumps),
    message_lists.map(json.dumps),
    message_lists.map(lambda v: json.dumps(v)[: len(json.dumps(v)) // 2]),
    st.integers(100, 100_000).map(deep_json),
    st.just('[{"role": "user", "parts": [{"type": "text", "content": "\\ud800"}], "\\udfff": 1}]'),
)


def with_bytes(value: Any) -> Any:
    """A structured message with bytes where text would be (a producer writing a kvlist, not JSON text)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace")
    if isinstance(value, list):
        return [with_bytes(v) for v in value]
    if isinstance(value, dict):
        return {k: with_bytes(v) if k in ("response", "content", "arguments") else v for k, v in value.items()}
    return value


structured_messages = message_lists.map(lambda v: to_any_value(with_bytes(v))) | message_lists.map(to_any_value)

KEYS = sorted({v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str) and "." in v})
INDEXED_KEYS = [
    "llm.input_messages.0.message.role",
    "llm.input_messages.0.message.content",
    "llm.input_messages.1.message.tool_calls.0.tool_call.function.name",
    "llm.input_messages.1.message.tool_calls.0.tool_call.function.arguments",
    "llm.output_messages.0.message.role",
    "llm.output_messages.0.message.content",
    "llm.tools.0.tool.json_schema",
    "gen_ai.prompt.0.role",
    "gen_ai.prompt.0.content",
    "gen_ai.completion.0.role",
    "gen_ai.completion.0.content",
    "gen_ai.completion.0.tool_calls.0.name",
    "gen_ai.completion.0.tool_calls.0.arguments",
    "llm.request.functions.0.name",
    "llm.request.functions.0.parameters",
]
OPERATIONS = ["chat", "text_completion", "generate_content", "invoke_agent", "create_agent", "execute_tool", "x"]


@st.composite
def attributes(draw: st.DrawFn) -> list[KeyValue]:
    kvs = []
    if draw(st.booleans()):
        kvs.append(
            KeyValue(key=sc.GEN_AI_OPERATION_NAME, value=AnyValue(string_value=draw(st.sampled_from(OPERATIONS))))
        )
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["user", "assistant", "tool", "agent", "other"]))
        kvs.append(KeyValue(key=sc.AGENT_EVAL_STEP_KIND, value=AnyValue(string_value=kind)))
        index = draw(mostly(st.integers(0, 6).map(lambda i: AnyValue(int_value=i)), scalar_any))
        kvs.append(KeyValue(key=sc.AGENT_EVAL_STEP_INDEX, value=index))
    for key in (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES):
        if draw(st.booleans()):
            value = draw(
                mostly(
                    message_lists.map(lambda v: AnyValue(string_value=json.dumps(v))),
                    json_text.map(lambda t: AnyValue(string_value=t)) | structured_messages | any_values,
                )
            )
            kvs.append(KeyValue(key=key, value=value))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["LLM", "TOOL", "AGENT", "CHAIN"]))
        kvs.append(KeyValue(key=sc.OPENINFERENCE_SPAN_KIND, value=AnyValue(string_value=kind)))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["tool", "agent", "workflow", "task"]))
        kvs.append(KeyValue(key=sc.TRACELOOP_SPAN_KIND, value=AnyValue(string_value=kind)))
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(KEYS + INDEXED_KEYS) | protobuf_text)
        value = draw(json_text.map(lambda t: AnyValue(string_value=t)) | any_values)
        kvs.append(KeyValue(key=key, value=value))
    return kvs


# Few distinct ids, so that spans share traces, collide and point at each other; and ids of any length.
trace_ids = st.sampled_from([b"\x01" * 16, b"\x02" * 16]) | st.binary(max_size=17)
span_ids = st.sampled_from([b"", b"\x0a" * 8, b"\x0b" * 8, b"\x0c" * 8, b"\x0d" * 8]) | st.binary(max_size=9)
times = st.integers(0, 3) | st.integers(0, 2**64 - 1)


@st.composite
def spans(draw: st.DrawFn, trace_id: bytes) -> Span:
    span = Span(
        trace_id=trace_id,
        span_id=draw(span_ids),
        parent_span_id=draw(span_ids),
        name=draw(st.sampled_from(["chat", "invoke_agent", "execute_tool", "user_message"]) | protobuf_text),
        start_time_unix_nano=draw(times),
        end_time_unix_nano=draw(times),
        attributes=draw(attributes()),
    )
    if draw(st.booleans()):
        span.parent_span_id = span.span_id  # its own parent
    span.status.code = draw(st.integers(0, 3))  # type: ignore[assignment]  # 3: no code protobuf knows
    span.status.message = draw(protobuf_text)
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(name=draw(protobuf_text), time_unix_nano=draw(times), attributes=draw(attributes()))
    return span


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(
            draw(st.lists(st.builds(KeyValue, key=protobuf_text, value=any_values), max_size=2))
        )
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add()
            trace_id = draw(trace_ids)
            ss.spans.extend(draw(st.lists(spans(trace_id), min_size=1, max_size=5)))
    return request


def mutations(data: Any) -> st.SearchStrategy[Any]:
    """Truncations and byte (or character) substitutions of ``data``."""
    if not data:
        return st.just(data)
    return st.one_of(
        st.integers(0, len(data) - 1).map(lambda n: data[:n]),
        st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
            lambda t: data[: t[0]] + (bytes([t[1]]) if isinstance(data, bytes) else chr(t[1])) + data[t[0] + 1 :]
        ),
    )


# --- the explicit crash inputs ------------------------------------------------------------------------------


def request_of(*spans: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request


def chat_span(span_id: bytes, parent: bytes, *, inputs: AnyValue | None = None, start: int = 1) -> Span:
    text = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    return Span(
        trace_id=b"\x01" * 16,
        span_id=span_id,
        parent_span_id=parent,
        name="chat",
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1,
        attributes=[
            KeyValue(key=sc.GEN_AI_OPERATION_NAME, value=AnyValue(string_value="chat")),
            KeyValue(key=sc.GEN_AI_INPUT_MESSAGES, value=inputs or AnyValue(string_value=text)),
        ],
    )


# A chat span that is its own parent, with no agent span: its trace went on unlabelled (TypeError in
# ingest/spans.py: the span was its own ancestor, so the same call as itself, and no step was left).
SELF_PARENT_CHAT = request_of(chat_span(b"\x0a" * 8, b"\x0a" * 8))
# Two chat spans, each the other's parent.
CYCLIC_CHATS = request_of(chat_span(b"\x0a" * 8, b"\x0b" * 8), chat_span(b"\x0b" * 8, b"\x0a" * 8, start=2))
# A bytes_value inside a structured (kvlist) tool_call_response (TypeError in ingest/messages.py: json.dumps).
BYTES_RESPONSE = request_of(
    chat_span(
        b"\x0a" * 8,
        b"",
        inputs=to_any_value(
            [{"role": "user", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"r": b"\xff\x00"}}]}]
        ),
    )
)
# Tool-call arguments 100 000 levels deep (RecursionError in ingest/messages.py: parse_arguments).
DEEP_ARGUMENTS = request_of(
    chat_span(
        b"\x0a" * 8,
        b"",
        inputs=AnyValue(
            string_value='[{"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": "'
            + deep_json(100_000)
            + '"}]}]'
        ),
    )
)
# A message list 100 000 levels deep in gen_ai.input.messages (RecursionError in ingest/dialects.py: _json).
DEEP_MESSAGES = request_of(chat_span(b"\x0a" * 8, b"", inputs=AnyValue(string_value=deep_json(100_000))))


def check_reads(request: ExportTraceServiceRequest) -> None:
    """The request's runs are read and evaluated, and every result is written as UTF-8 JSON."""
    runs = runs_from_request(request)
    # Lean records (a span no dialect reads keeps only its shape) make the same runs as whole ones.
    lean = runs_from_records(list(records_from_request(request, lean=True)))
    assert repr(lean) == repr(runs)
    for run in runs:
        evaluation = ENGINE.evaluate(run)
        # No detector failed on what the readers made of the spans (the engine reports that as a finding).
        assert not [f.evidence for f in evaluation.failures if f.mode == "evaluator_error"]
        json.dumps(evaluation.to_dict(), ensure_ascii=False).encode("utf-8")
    by_trace: dict[str, list[Any]] = {}
    for record in records_from_request(request):
        by_trace.setdefault(record.trace_id, []).append(record)
    for records in by_trace.values():
        render_trace(records).encode("utf-8")


@FUZZ
@given(requests())
@example(SELF_PARENT_CHAT)
@example(CYCLIC_CHATS)
@example(BYTES_RESPONSE)
@example(DEEP_ARGUMENTS)
@example(DEEP_MESSAGES)
def test_random_requests_are_read_and_evaluated(request: ExportTraceServiceRequest) -> None:
    logging.disable(logging.WARNING)  # the readers warn about every malformed span; thousands here
    try:
        check_reads(request)
        # The same request through the wire, and through OTLP JSON (which refuses ids of the wrong length).
        check_reads(ExportTraceServiceRequest.FromString(request.SerializeToString()))
        try:
            again = request_from_json(request_to_json(request))
        except ValueError as exc:
            assert "not a trace id" in str(exc) or "not a span id" in str(exc)
        else:
            check_reads(again)
    finally:
        logging.disable(logging.NOTSET)


@FUZZ
@given(st.binary(max_size=200) | requests().map(lambda r: r.SerializeToString()).flatmap(mutations))
def test_random_bytes_are_refused_or_read(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    try:
        request = ExportTraceServiceRequest.FromString(data)
    except DecodeError:
        return
    logging.disable(logging.WARNING)
    try:
        check_reads(request)
    finally:
        logging.disable(logging.NOTSET)


def test_a_self_parenting_chat_span_is_a_run() -> None:
    [run] = runs_from_request(SELF_PARENT_CHAT)
    assert [s.kind for s in run.steps] == ["user"]
    assert run.root_span_id == "0a" * 8


def test_a_cycle_of_parents_is_broken_at_the_first_span(caplog: pytest.LogCaptureFixture) -> None:
    runs = runs_from_request(CYCLIC_CHATS)
    assert [run.root_span_id for run in runs] == ["0a" * 8]
    assert "0a0a0a0a0a0a0a0a" in caplog.text and "cycle of parent links" in caplog.text


def test_bytes_in_a_structured_tool_response_are_base64_text() -> None:
    [run] = runs_from_request(BYTES_RESPONSE)
    [step] = run.steps
    assert step.kind == "tool" and step.result == '{"r": "/wA="}'  # bytes as OTLP JSON writes them: base64


def test_deep_json_in_an_attribute_is_a_problem_named_by_span(caplog: pytest.LogCaptureFixture) -> None:
    [run] = runs_from_request(DEEP_MESSAGES)  # a model call whose messages cannot be read
    assert run.steps == ()
    assert "span 0a0a0a0a0a0a0a0a" in caplog.text and "gen_ai.input.messages is not JSON" in caplog.text
    [run] = runs_from_request(DEEP_ARGUMENTS)
    [step] = run.steps
    assert isinstance(step, AssistantMessage)
    assert step.tool_calls[0].arguments is None and step.tool_calls[0].raw_arguments == deep_json(100_000)


# --- (b) request_from_json on random text ---------------------------------------------------------------------


def otlp_shaped(value: Any) -> dict[str, Any]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": [value]}], "resource": value}]}


json_texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    json_values.map(json.dumps),
    json_values.map(lambda v: json.dumps(otlp_shaped(v), ensure_ascii=False)),
    st.dictionaries(
        st.sampled_from(["traceId", "spanId", "parentSpanId", "name", "attributes", "kind", "status", "events"]),
        json_values,
    ).map(lambda span: json.dumps(otlp_shaped(span))),
    requests().map(request_to_json).flatmap(mutations),
    st.integers(1, 100_000).map(lambda n: '{"resourceSpans": ' + "[" * n),
    st.integers(1, 100_000).map(lambda n: '{"resourceSpans": [{"scopeSpans": ' + deep_json(n, inner="") + "}]}"),
    st.sampled_from(["\\ud800", "\\udfff", "\\ud83d", "\\ude00x"]).map(
        lambda s: '{"' + s + '": 1, "resourceSpans": [{"scopeSpans": [{"spans": [{"name": "' + s + '"}]}]}]}'
    ),
)


@FUZZ
@given(json_texts)
@example('{"\\ud800": 1}')  # SystemError from upb's json_format: a field name it cannot encode
@example('{"resourceSpans": [{"\\udfff": []}]}')
@example('{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\\ud800"}]}]}]}')
@example("[" * 100_000 + "]" * 100_000)  # RecursionError
@example('{"resourceSpans": [{"scopeSp')  # truncated
@example('{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": ' + "9" * 5000 + "}]}]}]}")
def test_request_from_json_raises_only_value_error(text: str) -> None:
    try:
        request = request_from_json(text)
    except ValueError as exc:
        assert str(exc)
        return
    # Accepted: an ordinary request, whose strings can be written as UTF-8.
    request.SerializeToString()
    request_to_json(request).encode("utf-8")


@FUZZ
@given(json_values)
def test_request_from_json_on_decoded_objects(value: Any) -> None:
    for obj in (value, otlp_shaped(value)):
        with contextlib.suppress(ValueError):
            request_from_json(obj)


def test_a_lone_surrogate_reads_as_the_replacement_character() -> None:
    request = request_from_json('{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "a\\ud800b"}]}]}]}')
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "a\ufffdb"
    assert loads('{"\\udfff": "\\ud83d\\ude00"}') == {"\ufffd": "\U0001f600"}


def test_json_nested_too_deep_is_refused_where_it_goes_too_deep() -> None:
    with pytest.raises(ValueError, match=r"nested deeper than 200 levels: line 1 column 218 \(char 217\)"):
        request_from_json('{"resourceSpans": ' + "[" * 100_000)
    assert loads(deep_json(MAX_DEPTH)) is not None
    with pytest.raises(json.JSONDecodeError, match="nested deeper than 200 levels"):
        loads(deep_json(MAX_DEPTH + 1))
