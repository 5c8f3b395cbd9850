"""A customer-service agent loop with tools, with and without the in-loop guard.

Offline by default: the model is a scripted stand-in that makes a realistic mistake (it calls `cancel_order`
with a reason the tool does not accept, then tells the user the order is cancelled although the call failed).
With the guard, the wrong call is not executed: the critique goes back to the model as the tool's answer, and
the model corrects the call.

    python examples/customer_service_agent.py              # with the guard
    python examples/customer_service_agent.py --no-guard   # without: the failure happens

Set OPENAI_BASE_URL (and OPENAI_API_KEY, OPENAI_MODEL) to use any OpenAI-compatible chat-completions endpoint
instead of the scripted model, and OTEL_EXPORTER_OTLP_ENDPOINT to send the trace to `otel-agent-eval serve`.
Give the guard an evaluation model too, after its detectors, with a latency budget (fail-open past it):

    AGENT_EVAL_JUDGE_API_KEY=... python examples/customer_service_agent.py \
        --judge-base-url http://localhost:8000/v1 --judge-model my-judge --judge-budget 2
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.hook import Guard
from otel_agent_eval.hook.loops import OpenAILoopGuard
from otel_agent_eval.ingest.spans import runs_from_spans
from otel_agent_eval.instrument import agent_run

POLICY = "You are a shop assistant. Look an order up before you cancel it, and tell the user what happened."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "description": "Cancel a pending order.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "reason": {"type": "string", "enum": ["no longer needed", "ordered by mistake"]},
                },
                "required": ["order_id", "reason"],
            },
        },
    },
]
ORDERS = {"#1042": {"order_id": "#1042", "status": "pending", "total": 59.9}}


def get_order(order_id: str) -> dict[str, Any]:
    if order_id not in ORDERS:
        raise KeyError(f"order {order_id} not found")
    return ORDERS[order_id]


def cancel_order(order_id: str, reason: str) -> dict[str, Any]:
    if reason not in ("no longer needed", "ordered by mistake"):
        raise ValueError(f"Error: invalid reason {reason!r}")
    ORDERS[order_id] = {**ORDERS[order_id], "status": "cancelled"}
    return ORDERS[order_id]


FUNCTIONS = {"get_order": get_order, "cancel_order": cancel_order}


def call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def scripted_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Stands in for the model: looks the order up, then cancels it with a reason the tool does not take."""
    last = messages[-1]
    if last["role"] == "user":
        return {"role": "assistant", "content": None, "tool_calls": [call("call_1", "get_order", order_id="#1042")]}
    if last["role"] == "tool" and last["content"].startswith("Not executed:"):  # the guard's critique
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("call_3", "cancel_order", order_id="#1042", reason="no longer needed")],
        }
    if last["role"] == "tool" and '"status": "pending"' in last["content"]:
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("call_2", "cancel_order", order_id="#1042", reason="not needed")],
        }
    return {"role": "assistant", "content": "Your order #1042 has been cancelled."}


def remote_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Any OpenAI-compatible chat-completions endpoint (OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL)."""
    body = {"model": os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), "messages": messages, "tools": TOOLS}
    request = urllib.request.Request(
        os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        message = json.loads(response.read())["choices"][0]["message"]
    return {"role": "assistant", "content": message.get("content"), "tool_calls": message.get("tool_calls")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-guard", action="store_true", help="run without the in-loop guard")
    parser.add_argument("--judge-base-url", default=os.environ.get("AGENT_EVAL_JUDGE_BASE_URL"))
    parser.add_argument("--judge-model", default=os.environ.get("AGENT_EVAL_JUDGE_MODEL"))
    parser.add_argument("--judge-budget", type=float, default=2.0, help="seconds the judge may take on a step")
    args = parser.parse_args()
    model = remote_model if os.environ.get("OPENAI_BASE_URL") else scripted_model

    provider = TracerProvider(resource=Resource.create({"service.name": "shop-agent"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    judge = None
    if args.judge_base_url and args.judge_model:
        from otel_agent_eval.evaluate.judge import ChatClient, LLMJudge

        key = os.environ.get("AGENT_EVAL_JUDGE_API_KEY")
        judge = LLMJudge(ChatClient(args.judge_base_url, args.judge_model, api_key=key, retries=0))
    checker = Guard(tools=TOOLS, policy=POLICY, judge=judge, judge_budget=args.judge_budget)
    guard = None if args.no_guard else OpenAILoopGuard(checker)

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": POLICY},
        {"role": "user", "content": "Please cancel order #1042, I no longer need it."},
    ]
    revisions = 0
    with agent_run("shop-agent", system_instructions=POLICY, tool_definitions=TOOLS, tracer_provider=provider) as run:
        run.user_message(messages[-1]["content"])
        for _ in range(8):
            with run.chat(model="scripted" if model is scripted_model else os.environ.get("OPENAI_MODEL")) as chat:
                reply = model(messages)
                chat.set_response(content=reply.get("content"), tool_calls=reply.get("tool_calls") or [])
                answers = guard.review(messages, reply) if guard is not None else None
            messages.append(reply)
            if not reply.get("tool_calls"):
                break
            if answers is not None:  # the guard sent the step back: the critique is the tools' answer
                revisions += 1
                for tool_call, answer in zip(chat.tool_calls, answers, strict=True):
                    # Recorded as the call's execution, refused: the trace shows the failure, then its fix.
                    with run.tool(tool_call.name, call_id=tool_call.id, arguments=tool_call.arguments) as t:
                        t.set_error(answer["content"])
                messages.extend(answers)
                continue
            for tool_call in chat.tool_calls:
                try:
                    result = run.execute(tool_call, FUNCTIONS[tool_call.name])
                    content = json.dumps(result)
                except (KeyError, ValueError) as exc:
                    content = str(exc).strip("'\"")
                messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": content})
    provider.shutdown()

    [recorded] = runs_from_spans(memory.get_finished_spans())
    evaluation = Engine().evaluate(recorded)
    print(f"guard: {'off' if guard is None else 'on'}; revisions: {revisions}")
    print(f"final answer: {messages[-1].get('content')}")
    print(f"order status: {ORDERS['#1042']['status']}")
    print(f"outcome: {evaluation.outcome}")
    for finding in evaluation.failures:
        print(f"  [{finding.step}] {finding.outcome} {finding.category}.{finding.mode}: {finding.critique}")


if __name__ == "__main__":
    main()
