"""Tool executions on live spans: user-side calls, call ids, async tools, threads, nesting, invalid arguments."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_agent_eval import semconv as sc
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.instrument import agent_run, tool
from otel_agent_eval.model import ToolCall, ToolExecution, UserMessage

Pipeline = tuple[TracerProvider, InMemorySpanExporter]


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def tool_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("execute_tool")]


@tool
def lookup(email: str) -> str:
    return f"account of {email}"


@tool
def toggle_airplane_mode(on: bool) -> str:
    return f"airplane mode {'on' if on else 'off'}"


# --- 1: tools the user runs (dual control) -------------------------------------------------------------------


def test_user_tool_calls(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("telecom", tracer_provider=provider) as run:
        run.user_message(
            "I turned it off", tool_calls=[{"id": "u1", "name": "toggle_airplane_mode", "arguments": {"on": False}}]
        )
        run.execute(ToolCall("u1", "toggle_airplane_mode", {"on": False}), toggle_airplane_mode)  # the user's call
        with run.tool("check_network", requested_by="user") as t:
            t.set_result("no signal")
        with run.chat(model="m") as call:
            call.set_response(tool_calls=[{"id": "a1", "name": "lookup", "arguments": {"email": "x"}}])
        run.execute(call.tool_calls[0], lookup)
    spans = exporter.get_finished_spans()
    user = attrs_of(spans[0])
    assert json.loads(user[sc.GEN_AI_INPUT_MESSAGES]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "I turned it off"},
                {"type": "tool_call", "id": "u1", "name": "toggle_airplane_mode", "arguments": {"on": False}},
            ],
        }
    ]
    tools = tool_spans(exporter)
    assert [(s.name, attrs_of(s).get(sc.AGENT_EVAL_TOOL_REQUESTED_BY)) for s in tools] == [
        ("execute_tool toggle_airplane_mode", "user"),
        ("execute_tool check_network", "user"),
        ("execute_tool lookup", None),  # the assistant's: no attribute
    ]
    assert attrs_of(tools[0])[sc.GEN_AI_TOOL_CALL_RESULT] == "airplane mode off"


def test_user_tool_calls_read_back(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("telecom", tracer_provider=provider) as run:
        run.user_message("done", tool_calls=[{"id": "u1", "name": "reboot", "arguments": {}}])
        with run.tool("reboot") as t:  # no id given: takes the user's open call
            t.set_result("rebooted")
    [back] = runs_from_spans(exporter.get_finished_spans())
    user, execution = back.steps
    assert isinstance(user, UserMessage) and user.tool_calls == (ToolCall("u1", "reboot", {}),)
    assert isinstance(execution, ToolExecution)
    assert (execution.call_id, execution.requested_by, execution.result) == ("u1", "user", "rebooted")


# --- 26: @tool spans get the model's call id -----------------------------------------------------------------


def test_tool_decorator_takes_the_call_id_by_name_and_order(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run:
        with run.chat(model="m") as call:
            call.set_response(
                tool_calls=[
                    {"id": "c1", "name": "lookup", "arguments": {"email": "a"}},
                    {"id": "c2", "name": "toggle_airplane_mode", "arguments": {"on": True}},
                    {"id": "c3", "name": "lookup", "arguments": {"email": "b"}},
                    {"id": "c4", "name": "lookup", "arguments": {"email": "c"}},
                ]
            )
        run.execute(call.tool_calls[2], lookup)  # c3 by id: no longer open
        lookup("a")
        toggle_airplane_mode(True)
        lookup("c")
        lookup("extra")  # no open call left
        with run.chat(model="m") as call:
            call.set_response(content="done")
        lookup("after")  # the latest answer has no calls
    ids = [(attrs_of(s)[sc.GEN_AI_TOOL_NAME], attrs_of(s).get(sc.GEN_AI_TOOL_CALL_ID)) for s in tool_spans(exporter)]
    assert ids == [
        ("lookup", "c3"),
        ("lookup", "c1"),
        ("toggle_airplane_mode", "c2"),
        ("lookup", "c4"),
        ("lookup", None),
        ("lookup", None),
    ]


# --- 9: async tools ------------------------------------------------------------------------------------------


@tool
async def fetch_order(order_id: str) -> dict[str, str]:
    await asyncio.sleep(0.02)
    return {"order_id": order_id, "status": "shipped"}


@tool
async def cancel_order(order_id: str) -> None:
    await asyncio.sleep(0.01)
    raise RuntimeError("already delivered")


def test_async_tools(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    assert inspect.iscoroutinefunction(fetch_order)

    async def agent() -> list[Any]:
        with agent_run("a", tracer_provider=provider) as run:
            with run.chat(model="m") as call:
                call.set_response(tool_calls=[{"id": "c1", "name": "fetch_order", "arguments": {"order_id": "#1"}}])
            first = await fetch_order("#1")
            second = await run.aexecute(ToolCall("c2", "fetch_order", {"order_id": "#2"}), fetch_order)
            with pytest.raises(RuntimeError, match="already delivered"):
                await cancel_order("#3")
            return [first, second]

    assert asyncio.run(agent()) == [{"order_id": "#1", "status": "shipped"}, {"order_id": "#2", "status": "shipped"}]
    spans = tool_spans(exporter)
    assert [(s.name, attrs_of(s).get(sc.GEN_AI_TOOL_CALL_ID)) for s in spans] == [
        ("execute_tool fetch_order", "c1"),
        ("execute_tool fetch_order", "c2"),  # one span: fetch_order inside aexecute is that step
        ("execute_tool cancel_order", None),
    ]
    for span in spans:  # the span covers the awaited call
        assert span.end_time is not None and span.start_time is not None
        assert span.end_time - span.start_time >= 10_000_000
    assert json.loads(attrs_of(spans[1])[sc.GEN_AI_TOOL_CALL_RESULT]) == {"order_id": "#2", "status": "shipped"}
    assert spans[2].status.status_code is StatusCode.ERROR
    assert attrs_of(spans[2])[sc.ERROR_TYPE] == "RuntimeError"
    assert attrs_of(spans[2])[sc.AGENT_EVAL_TOOL_ERROR] == "already delivered"


# --- 10: thread pools ----------------------------------------------------------------------------------------


def test_execute_in_a_plain_worker_thread_parents_on_the_run(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    calls = [ToolCall(f"c{i}", "lookup", {"email": f"u{i}"}) for i in range(4)]
    with agent_run("a", tracer_provider=provider) as run, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run.execute(c, lookup), calls))
        pool.submit(run.user_message, "from a worker").result()
    assert results == [f"account of u{i}" for i in range(4)]
    *steps, root = exporter.get_finished_spans()
    assert len(steps) == 5
    for span in steps:
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id


def test_tool_decorator_in_a_worker_with_copied_context(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider), ThreadPoolExecutor(2) as pool:
        copied = pool.submit(contextvars.copy_context().run, lookup, "x").result()
        plain = pool.submit(lookup, "y").result()  # no context: the run is not found, a plain call
    assert (copied, plain) == ("account of x", "account of y")
    [span, root] = exporter.get_finished_spans()
    assert span.name == "execute_tool lookup" and attrs_of(span)[sc.GEN_AI_TOOL_CALL_RESULT] == "account of x"
    assert span.parent is not None and span.parent.span_id == root.context.span_id


def _slow_take_index(frame: FrameType, event: str, arg: Any) -> Any:
    """A trace function that sleeps on every line of ``_take_index``, so that threads interleave inside it."""
    if frame.f_code.co_name != "_take_index":
        return None

    def each_line(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            time.sleep(0.0002)
        return each_line

    return each_line


def test_step_indices_are_unique_across_threads(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    n_threads, per_thread = 4, 40
    barrier = threading.Barrier(n_threads)
    with agent_run("a", tracer_provider=provider) as run:

        def work() -> None:
            barrier.wait()
            for _ in range(per_thread):
                run.user_message("hi")

        threads = [threading.Thread(target=work) for _ in range(n_threads)]
        threading.settrace(_slow_take_index)  # for the threads started from here on
        try:
            for t in threads:
                t.start()
        finally:
            threading.settrace(None)
        for t in threads:
            t.join()
    indices = sorted(attrs_of(s)[sc.AGENT_EVAL_STEP_INDEX] for s in exporter.get_finished_spans()[:-1])
    assert indices == list(range(n_threads * per_thread))


# --- 11: the in-tool guard belongs to the run ----------------------------------------------------------------


@tool
def search(query: str) -> str:
    return f"results for {query}"


def test_sub_agent_inside_a_tool_records_its_own_tools(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans

    @tool
    def delegate(task: str) -> str:
        with agent_run("sub", tracer_provider=provider):
            return search(task)

    with agent_run("main", tracer_provider=provider) as run:
        assert run.execute(ToolCall("c1", "delegate", {"task": "t"}), delegate) == "results for t"
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert list(spans) == ["execute_tool search", "invoke_agent sub", "execute_tool delegate", "invoke_agent main"]

    def parent_of(name: str) -> int | None:
        parent = spans[name].parent
        return parent.span_id if parent else None

    assert parent_of("execute_tool search") == spans["invoke_agent sub"].context.span_id
    assert parent_of("invoke_agent sub") == spans["execute_tool delegate"].context.span_id
    assert parent_of("execute_tool delegate") == spans["invoke_agent main"].context.span_id


def test_tool_function_inside_run_tool_is_the_same_step(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    with agent_run("a", tracer_provider=provider) as run, run.tool("lookup", call_id="c1") as t:
        t.set_result(lookup("x"))
    assert [s.name for s in exporter.get_finished_spans()] == ["execute_tool lookup", "invoke_agent a"]


# --- 42: arguments that were not JSON ------------------------------------------------------------------------


def test_execute_refuses_arguments_that_were_not_json(memory_spans: Pipeline) -> None:
    provider, exporter = memory_spans
    ran = []

    def fn(**kwargs: Any) -> str:
        ran.append(kwargs)
        return "ran"

    bad = ToolCall("c7", "refund", None, raw_arguments='{"amount": 12')
    with agent_run("a", tracer_provider=provider) as run, pytest.raises(ValueError) as info:
        run.execute(bad, fn)
    assert str(info.value) == "tool call c7 refund: arguments are not valid JSON: '{\"amount\": 12'"
    assert ran == []
    [span, _] = exporter.get_finished_spans()
    assert span.name == "execute_tool refund" and span.status.status_code is StatusCode.ERROR
    assert attrs_of(span)[sc.GEN_AI_TOOL_CALL_ID] == "c7"
    assert attrs_of(span)[sc.ERROR_TYPE] == "ValueError"
    assert attrs_of(span)[sc.AGENT_EVAL_TOOL_ERROR] == str(info.value)
