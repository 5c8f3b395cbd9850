"""The LangChain instrumentor: real LangChain / LangGraph agents, a real ChatOpenAI, a local OpenAI-speaking server."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pytest

pytest.importorskip("langgraph.prebuilt")
pytest.importorskip("langchain_openai")

import openai
from langchain_core.callbacks import BaseCallbackManager
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import ToolNode, create_react_agent
from llm_server import LLMServer, http_error, openai_chat
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.instrument import agent_run
from otel_agent_eval.instrument.auto import langchain as module
from otel_agent_eval.instrument.auto.langchain import LangChainInstrumentor, callback_handler
from otel_agent_eval.instrument.auto.openai import OpenAIInstrumentor
from otel_agent_eval.instrument.conversation import recorded_by_framework
from otel_agent_eval.model import AssistantMessage, ToolExecution, UserMessage

# create_react_agent moved to langchain.agents.create_agent (langchain >= 1.0, not installed here): still supported.
pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")

QUESTION = "What is the weather in Paris, in celsius?"


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather in a city."""
    return f"20 degrees {unit} and sunny in {city}"


@tool
def get_order(order_id: str) -> str:
    """Look an order up."""
    raise ConnectionError("order service unavailable")


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LangChainInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:  # a singleton: left on by someone else
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider)
    yield exporter
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as s:
        yield s


def chat_model(server: LLMServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.openai_base_url, api_key="test", model="gpt-test", max_retries=0, **kwargs)  # type: ignore[arg-type]


def weather_agent(server: LLMServer, unit: str = "celsius", **kwargs: Any) -> Any:
    """A LangGraph ReAct agent whose model asks for the weather tool once, then answers."""
    server.script(
        openai_chat(tool_calls=[("call_1", "get_weather", {"city": "Paris", "unit": unit})]),
        openai_chat("It is 20 degrees and sunny in Paris."),
    )
    return create_react_agent(chat_model(server, **kwargs), tools=[get_weather], name="weather")


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0):
        out.setdefault(span.name, []).append(span)
    return out


def attr(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def messages(span: ReadableSpan, key: str) -> list[dict[str, Any]]:
    value = json.loads(str(attr(span)[key]))
    assert isinstance(value, list)
    return value


# --- 1. a LangGraph ReAct agent: one trace ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["invoke", "streamed", "ainvoke"])
def test_a_react_agent_is_one_trace(spans: InMemorySpanExporter, server: LLMServer, mode: str) -> None:
    agent = weather_agent(server, streaming=mode == "streamed")
    inputs = {"messages": [("user", QUESTION)]}
    config: Any = {"configurable": {"thread_id": "thread-7"}}
    if mode == "ainvoke":
        result = asyncio.run(agent.ainvoke(inputs, config=config))
    else:
        result = agent.invoke(inputs, config=config)
    assert result["messages"][-1].content == "It is 20 degrees and sunny in Paris."

    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    names = by_name(spans)
    assert sorted(names) == ["chat gpt-test", "execute_tool get_weather", "invoke_agent weather"]
    [root], [executed], chats = names["invoke_agent weather"], names["execute_tool get_weather"], names["chat gpt-test"]
    assert root.parent is None and len(chats) == 2
    assert all(parent_id(s) == root.context.span_id for s in [executed, *chats])  # nested chains add no span
    assert attr(root)["gen_ai.operation.name"] == "invoke_agent" and attr(root)["gen_ai.agent.name"] == "weather"
    assert attr(root)["gen_ai.conversation.id"] == "thread-7"

    assert attr(executed)["gen_ai.tool.call.id"] == "call_1"
    assert json.loads(str(attr(executed)["gen_ai.tool.call.arguments"])) == {"city": "Paris", "unit": "celsius"}
    assert attr(executed)["gen_ai.tool.call.result"] == "20 degrees celsius and sunny in Paris"
    assert "agent_eval.step.index" not in attr(executed) and executed.status.status_code is StatusCode.UNSET

    first, second = chats
    assert attr(first)["gen_ai.provider.name"] == "openai" and attr(first)["gen_ai.request.model"] == "gpt-test"
    assert attr(first)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    if mode != "streamed":  # LangChain keeps no response id of a stream, nor its usage unless asked for
        assert str(attr(first)["gen_ai.response.id"]).startswith("chatcmpl-")
        assert attr(first)["gen_ai.usage.input_tokens"] == 10 and attr(first)["gen_ai.usage.output_tokens"] == 5
    assert "get_weather" in str(attr(first)["gen_ai.tool.definitions"])
    assert "agent_eval.step.index" not in attr(first)
    assert messages(first, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}
    ]
    [call] = messages(first, "gen_ai.output.messages")
    assert call["parts"] == [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
    ]
    assert [m["role"] for m in messages(second, "gen_ai.input.messages")] == ["user", "assistant", "tool"]
    tool_result = messages(second, "gen_ai.input.messages")[2]["parts"][0]
    assert tool_result == {
        "type": "tool_call_response",
        "id": "call_1",
        "response": "20 degrees celsius and sunny in Paris",
    }
    [answer] = messages(second, "gen_ai.output.messages")
    assert answer["parts"] == [{"type": "text", "content": "It is 20 degrees and sunny in Paris."}]
    assert [r.body["model"] for r in server.requests] == ["gpt-test", "gpt-test"]


def test_under_an_application_span_the_steps_stay_under_the_agent(
    spans: InMemorySpanExporter, server: LLMServer, provider: TracerProvider
) -> None:
    agent = weather_agent(server)
    with trace.get_tracer("app", tracer_provider=provider).start_as_current_span("POST /chat") as request:
        agent.invoke({"messages": [("user", QUESTION)]})
    names = by_name(spans)
    [root] = names["invoke_agent weather"]
    assert parent_id(root) == request.get_span_context().span_id
    steps = [*names["chat gpt-test"], *names["execute_tool get_weather"]]
    assert len(steps) == 3 and all(parent_id(s) == root.context.span_id for s in steps)
    [run] = runs_from_spans(spans.get_finished_spans())
    assert run.agent_name == "weather" and [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]


# --- 2. read back and evaluated ---------------------------------------------------------------------------


def test_the_run_reads_back_and_a_planted_failure_is_labelled(spans: InMemorySpanExporter, server: LLMServer) -> None:
    weather_agent(server).invoke({"messages": [("system", "Answer briefly."), ("user", QUESTION)]})
    [run] = runs_from_spans(spans.get_finished_spans())
    assert [type(s) for s in run.steps] == [UserMessage, AssistantMessage, ToolExecution, AssistantMessage]
    user, asked, executed, answered = run.steps
    assert isinstance(user, UserMessage) and user.content == QUESTION
    assert isinstance(asked, AssistantMessage) and [(c.id, c.name) for c in asked.tool_calls] == [
        ("call_1", "get_weather")
    ]
    assert isinstance(executed, ToolExecution) and executed.call_id == "call_1" and executed.error is None
    assert executed.result == "20 degrees celsius and sunny in Paris"
    assert isinstance(answered, AssistantMessage) and answered.content == "It is 20 degrees and sunny in Paris."
    assert run.agent_name == "weather" and run.system_instructions == "Answer briefly."
    assert [t.name for t in run.tool_definitions] == ["get_weather"]
    assert Engine().evaluate(run).findings == ()

    spans.clear()
    # The model asks for a unit the tool's schema does not allow: LangGraph hands the validation error back
    # to the model, which answers anyway.
    weather_agent(server, unit="kelvin").invoke({"messages": [("user", QUESTION)]})
    [run] = runs_from_spans(spans.get_finished_spans())
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]
    executed = run.steps[2]
    assert isinstance(executed, ToolExecution) and executed.error is not None and "validation error" in executed.error
    findings = {(f.mode, f.step) for f in Engine().evaluate(run).findings}
    assert ("wrong_arguments", 1) in findings


# --- 3. with the OpenAI instrumentor too: each model call once -------------------------------------------


def test_with_the_openai_instrumentor_each_model_call_is_recorded_once(
    spans: InMemorySpanExporter, server: LLMServer, provider: TracerProvider
) -> None:
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    try:
        weather_agent(server).invoke({"messages": [("user", QUESTION)]})
        names = by_name(spans)
        assert len(names["chat gpt-test"]) == 2 and len(spans.get_finished_spans()) == 4
        assert all(parent_id(s) == names["invoke_agent weather"][0].context.span_id for s in names["chat gpt-test"])
        assert not recorded_by_framework()  # the marker is gone once the model call is over

        spans.clear()  # the SDK called directly afterwards is recorded by the SDK instrumentor, as usual
        server.script(openai_chat("Hi!"))
        with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as client:
            client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
        assert [s.name for s in spans.get_finished_spans()] == ["chat gpt-test"]
    finally:
        OpenAIInstrumentor().uninstrument()


def test_after_an_async_model_call_the_sdk_is_recorded_again(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(openai_chat("Hi!"))

    async def main() -> bool:
        await chat_model(server).ainvoke("hi")
        return recorded_by_framework()

    assert asyncio.run(main()) is False


# --- 4. a tool that raises --------------------------------------------------------------------------------


def order_agent(server: LLMServer, tools: Any) -> Any:
    server.script(
        openai_chat(tool_calls=[("call_9", "get_order", {"order_id": "#W1"})]),
        openai_chat("Sorry, I cannot reach the order service right now."),
    )
    return create_react_agent(chat_model(server), tools=tools, prompt="You are a shop assistant.")


def test_a_tool_error_handed_back_to_the_model(spans: InMemorySpanExporter, server: LLMServer) -> None:
    agent = order_agent(server, ToolNode([get_order], handle_tool_errors=True))
    result = agent.invoke({"messages": [("user", "Where is my order #W1?")]})
    assert result["messages"][-1].content == "Sorry, I cannot reach the order service right now."
    names = by_name(spans)
    [executed], [root] = names["execute_tool get_order"], names["invoke_agent LangGraph"]
    assert executed.status.status_code is StatusCode.ERROR and attr(executed)["error.type"] == "ConnectionError"
    assert attr(executed)["gen_ai.tool.call.id"] == "call_9"
    assert attr(executed)["agent_eval.tool.error"] == "order service unavailable"
    assert root.status.status_code is StatusCode.UNSET and len(names["chat gpt-test"]) == 2  # the run went on
    [run] = runs_from_spans(spans.get_finished_spans())
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]
    assert run.system_instructions == "You are a shop assistant."
    failed = run.steps[2]
    assert isinstance(failed, ToolExecution) and failed.error == "order service unavailable"
    assert ("tool_failure", 1) in {(f.mode, f.step) for f in Engine().evaluate(run).findings}


def test_a_tool_error_langgraph_lets_through_fails_the_run(spans: InMemorySpanExporter, server: LLMServer) -> None:
    agent = order_agent(server, [get_order])  # LangGraph's default: only argument errors go back to the model
    with pytest.raises(ConnectionError, match="order service unavailable"):
        agent.invoke({"messages": [("user", "Where is my order #W1?")]})
    names = by_name(spans)
    [executed], [root] = names["execute_tool get_order"], names["invoke_agent LangGraph"]
    assert executed.status.status_code is StatusCode.ERROR and attr(executed)["gen_ai.tool.call.id"] == "call_9"
    assert root.status.status_code is StatusCode.ERROR and attr(root)["error.type"] == "ConnectionError"
    assert len(names["chat gpt-test"]) == 1 and server.pending == 1


def test_a_failed_model_call_marks_its_span_and_propagates(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(http_error(429, "Rate limit reached", retry_after=0.01))
    agent = create_react_agent(chat_model(server), tools=[get_weather])
    with pytest.raises(openai.RateLimitError):
        agent.invoke({"messages": [("user", QUESTION)]})
    names = by_name(spans)
    [chat], [root] = names["chat gpt-test"], names["invoke_agent LangGraph"]
    assert chat.status.status_code is StatusCode.ERROR and "RateLimitError" in str(attr(chat)["error.type"])
    assert root.status.status_code is StatusCode.ERROR
    assert not recorded_by_framework()


# --- other shapes of LangChain use ------------------------------------------------------------------------


def test_a_hand_written_loop_around_a_chat_model_is_one_run(spans: InMemorySpanExporter, server: LLMServer) -> None:
    server.script(
        openai_chat(tool_calls=[("call_1", "get_weather", {"city": "Paris"})]),
        openai_chat("Sunny, 20 degrees."),
    )
    model = chat_model(server).bind_tools([get_weather])
    history: list[Any] = [SystemMessage("Answer briefly."), HumanMessage(QUESTION)]
    reply = model.invoke(history)
    assert isinstance(reply, AIMessage)
    history.append(reply)
    for call in reply.tool_calls:
        history.append(get_weather.invoke(call))  # a ToolCall in: a ToolMessage out, with the call's id
    assert model.invoke(history).content == "Sunny, 20 degrees."
    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1  # the conversation continues: one run
    [run] = runs_from_spans(finished)
    assert [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]
    executed = run.steps[2]
    assert isinstance(executed, ToolExecution) and executed.call_id == "call_1" and executed.result is not None


def test_inside_an_agent_run_the_graph_steps_are_its_steps(
    spans: InMemorySpanExporter, server: LLMServer, provider: TracerProvider
) -> None:
    agent = weather_agent(server)
    with agent_run("support", tracer_provider=provider):
        agent.invoke({"messages": [("user", QUESTION)]})
    names = by_name(spans)
    assert "invoke_agent weather" not in names
    [root] = names["invoke_agent support"]
    steps = [*names["chat gpt-test"], *names["execute_tool get_weather"]]
    assert len(steps) == 3 and all(parent_id(s) == root.context.span_id for s in steps)
    [run] = runs_from_spans(spans.get_finished_spans())
    assert run.agent_name == "support" and [s.kind for s in run.steps] == ["user", "assistant", "tool", "assistant"]


def test_a_model_called_inside_a_tool_is_a_run_of_its_own(spans: InMemorySpanExporter, server: LLMServer) -> None:
    @tool
    def summarize(text: str) -> str:
        """Summarize a text with a model."""
        return str(chat_model(server).invoke(f"Summarize: {text}").content)

    server.script(
        openai_chat(tool_calls=[("call_s", "summarize", {"text": "a long text"})]),
        openai_chat("A summary."),  # the model inside the tool
        openai_chat("Here is the summary: A summary."),
    )
    create_react_agent(chat_model(server), tools=[summarize], name="writer").invoke({"messages": [("user", "Sum up.")]})
    names = by_name(spans)
    [outer], [inner] = names["invoke_agent writer"], names["invoke_agent"]
    [executed] = names["execute_tool summarize"]
    assert parent_id(inner) == executed.context.span_id and parent_id(executed) == outer.context.span_id
    runs = runs_from_spans(spans.get_finished_spans())
    assert sorted(len(r.steps) for r in runs) == [2, 4]  # the sub-call is not a step of the outer run
    [main] = [r for r in runs if r.agent_name == "writer"]
    assert [s.kind for s in main.steps] == ["user", "assistant", "tool", "assistant"]


def test_a_handler_passed_in_the_config_without_instrumenting(server: LLMServer) -> None:
    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert not LangChainInstrumentor().is_instrumented_by_opentelemetry
    agent = weather_agent(server)
    agent.invoke({"messages": [("user", QUESTION)]}, config={"callbacks": [callback_handler(provider)]})
    assert sorted({s.name for s in exporter.get_finished_spans()}) == [
        "chat gpt-test",
        "execute_tool get_weather",
        "invoke_agent weather",
    ]


# --- 5. never breaks the application; uninstrument --------------------------------------------------------


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("instrumentation bug")


@pytest.mark.parametrize(
    "target",
    [
        "_chat_message",  # reading the input messages
        "_tool_definitions",
        "genai_message",
        "_finish",  # reading the answer
        "_run_name",  # starting the run
        "_Callbacks._start_run",
        "ToolExecution",  # starting a tool span
        "ToolRecorder.set_result",  # the tool's result
        "ModelCall.finish",
    ],
)
def test_a_failing_recording_never_breaks_the_agent(
    spans: InMemorySpanExporter, server: LLMServer, monkeypatch: pytest.MonkeyPatch, caplog: Any, target: str
) -> None:
    owner: Any = module
    *path, name = target.split(".")
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.setattr(owner, name, _raise)
    with caplog.at_level(logging.WARNING):
        result = weather_agent(server).invoke({"messages": [("user", QUESTION)]})
    assert result["messages"][-1].content == "It is 20 degrees and sunny in Paris."
    ours = [r for r in caplog.records if r.name == "otel_agent_eval.instrument"]
    assert ours and all("RuntimeError" in r.getMessage() for r in ours)
    assert not [r for r in caplog.records if r.name.startswith("langchain_core")]  # nothing reached LangChain
    assert not recorded_by_framework()
    assert all(s.end_time is not None for s in spans.get_finished_spans())


def test_uninstrument_restores_the_callback_manager(spans: InMemorySpanExporter, server: LLMServer) -> None:
    import wrapt

    assert isinstance(BaseCallbackManager.__dict__["__init__"], wrapt.FunctionWrapper)
    weather_agent(server).invoke({"messages": [("user", QUESTION)]})
    assert len(spans.get_finished_spans()) == 4
    spans.clear()
    LangChainInstrumentor().uninstrument()
    assert not isinstance(BaseCallbackManager.__dict__["__init__"], wrapt.FunctionWrapper)
    result = weather_agent(server).invoke({"messages": [("user", QUESTION)]})
    assert result["messages"][-1].content == "It is 20 degrees and sunny in Paris."
    assert spans.get_finished_spans() == ()


def test_the_module_imports_without_langchain() -> None:
    code = (
        "import sys\n"
        "sys.modules['langchain_core'] = None\n"
        "from otel_agent_eval.instrument.auto.langchain import LangChainInstrumentor\n"
        "print(LangChainInstrumentor().instrumentation_dependencies())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "('langchain-core >= 0.3',)"
