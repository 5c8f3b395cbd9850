"""A customer-service agent on the bare Anthropic SDK. Nothing in it knows about otel-agent-eval or OpenTelemetry.

Run it under ``opentelemetry-instrument`` (see ``run.py`` next to it). The SDK reads ``ANTHROPIC_BASE_URL``,
``ANTHROPIC_API_KEY``; ``ANTHROPIC_MODEL`` picks the model.
"""

import json
import os

import anthropic

TOOLS = [
    {
        "name": "get_order",
        "description": "Look up an order by its id.",
        "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
    {
        "name": "cancel_order",
        "description": "Cancel a pending order.",
        "input_schema": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "reason": {"type": "string", "enum": ["no longer needed", "ordered by mistake"]},
            },
            "required": ["order_id", "reason"],
        },
    },
]
ORDERS = {"#W1": {"order_id": "#W1", "status": "pending", "total": 59.9}}


def run_tool(name: str, arguments: dict) -> dict:
    if name == "get_order":
        return ORDERS.get(arguments["order_id"], {"error": "no such order"})
    if arguments.get("reason") not in ("no longer needed", "ordered by mistake"):
        return {"error": f"invalid reason: {arguments.get('reason')}"}
    ORDERS[arguments["order_id"]] = {**ORDERS[arguments["order_id"]], "status": "cancelled"}
    return ORDERS[arguments["order_id"]]


def main() -> None:
    client = anthropic.Anthropic()
    messages = [{"role": "user", "content": "Hi, please cancel my order #W1, I found it cheaper elsewhere."}]
    for _ in range(6):
        reply = client.messages.create(
            model=os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-5"),
            max_tokens=1024,
            system="You are a shop's support agent. Cancel orders when the customer asks.",
            tools=TOOLS,
            messages=messages,
        )
        messages.append(
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in reply.content]}
        )
        uses = [block for block in reply.content if block.type == "tool_use"]
        if not uses:
            print("".join(block.text for block in reply.content if block.type == "text"))
            return
        results = [
            {"type": "tool_result", "tool_use_id": use.id, "content": json.dumps(run_tool(use.name, use.input))}
            for use in uses
        ]
        messages.append({"role": "user", "content": results})


if __name__ == "__main__":
    main()
