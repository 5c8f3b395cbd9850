"""A tool-using agent with no framework, instrumented by hand with otel-agent-eval.

The model is a scripted stand-in so that the example runs offline. Run it:

    python examples/manual_agent.py                  # prints the trace it recorded as a span tree
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 python examples/manual_agent.py   # also sends it over OTLP/gRPC
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_agent_eval.ingest.span_record import SpanRecord
from otel_agent_eval.instrument import agent_run, tool
from otel_agent_eval.tree import render_trace

POLICY = "You are a shop assistant. Verify the order before acting. Confirm before cancelling."
ORDERS = {"#1042": {"order_id": "#1042", "status": "pending", "total": 59.9}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        },
    }
]


@tool
def get_order(order_id: str) -> dict[str, Any]:
    if order_id not in ORDERS:
        raise KeyError(f"order {order_id} not found")
    return ORDERS[order_id]


def scripted_model(turn: int) -> dict[str, Any]:
    """Stands in for a chat-completions call: first a tool call, then an answer."""
    if turn == 0:
        return {"tool_calls": [{"id": "call_1", "name": "get_order", "arguments": {"order_id": "#1042"}}]}
    return {"content": "Order #1042 is pending (59.90). Shall I cancel it?"}


def main() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-agent"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))

    with agent_run(
        "shop-agent",
        conversation_id="demo-1",
        system_instructions=POLICY,
        tool_definitions=TOOLS,
        tracer_provider=provider,
    ) as run:
        run.user_message("Can you cancel order #1042?")
        for turn in range(2):
            with run.chat(model="scripted-model", provider="example") as call:
                answer = scripted_model(turn)
                call.set_response(content=answer.get("content"), tool_calls=answer.get("tool_calls", []))
            for tool_call in call.tool_calls:
                run.execute(tool_call, get_order)
            if call.content:
                break

    provider.shutdown()
    print(render_trace([SpanRecord.from_readable(s) for s in memory.get_finished_spans()]))


if __name__ == "__main__":
    main()
