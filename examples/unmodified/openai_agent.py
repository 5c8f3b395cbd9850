"""A customer-service agent on the bare OpenAI SDK. Nothing in it knows about otel-agent-eval or OpenTelemetry.

Run it under ``opentelemetry-instrument`` (see ``run.py`` next to it) and its model calls become an evaluated,
labelled trace. The SDK reads ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``; ``OPENAI_MODEL`` picks the model.
"""

import json
import os

import openai

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order by its id.",
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
ORDERS = {"#W1": {"order_id": "#W1", "status": "pending", "total": 59.9}}


def get_order(order_id: str) -> dict:
    return ORDERS.get(order_id, {"error": f"no order {order_id}"})


def cancel_order(order_id: str, reason: str) -> dict:
    if reason not in ("no longer needed", "ordered by mistake"):
        return {"error": f"invalid reason: {reason}"}
    ORDERS[order_id] = {**ORDERS[order_id], "status": "cancelled"}
    return ORDERS[order_id]


def main() -> None:
    client = openai.OpenAI()
    messages = [
        {"role": "system", "content": "You are a shop's support agent. Cancel orders when the customer asks."},
        {"role": "user", "content": "Hi, please cancel my order #W1, I found it cheaper elsewhere."},
    ]
    for _ in range(6):
        reply = (
            client.chat.completions.create(
                model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), messages=messages, tools=TOOLS
            )
            .choices[0]
            .message
        )
        messages.append(reply.model_dump(exclude_none=True))
        if not reply.tool_calls:
            print(reply.content)
            return
        for call in reply.tool_calls:
            tool = {"get_order": get_order, "cancel_order": cancel_order}[call.function.name]
            result = tool(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})


if __name__ == "__main__":
    main()
