"""A customer-service agent on LangGraph (a prebuilt ReAct agent with a LangChain chat model). Nothing in it
knows about otel-agent-eval or OpenTelemetry.

Run it under ``opentelemetry-instrument`` (see ``run.py`` next to it). ``ChatOpenAI`` reads
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``; ``OPENAI_MODEL`` picks the model.
"""

import os
from typing import Literal

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

ORDERS = {"#W1": {"order_id": "#W1", "status": "pending", "total": 59.9}}


@tool
def get_order(order_id: str) -> dict:
    """Look up an order by its id."""
    return ORDERS.get(order_id, {"error": f"no order {order_id}"})


@tool
def cancel_order(order_id: str, reason: Literal["no longer needed", "ordered by mistake"]) -> dict:
    """Cancel a pending order."""
    if reason not in ("no longer needed", "ordered by mistake"):
        return {"error": f"invalid reason: {reason}"}
    ORDERS[order_id] = {**ORDERS[order_id], "status": "cancelled"}
    return ORDERS[order_id]


def main() -> None:
    model = ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), base_url=os.environ.get("OPENAI_BASE_URL"))
    agent = create_react_agent(
        model,
        tools=[get_order, cancel_order],
        prompt="You are a shop's support agent. Cancel orders when the customer asks.",
    )
    state = agent.invoke({"messages": [("user", "Hi, please cancel my order #W1, I found it cheaper elsewhere.")]})
    print(state["messages"][-1].content)


if __name__ == "__main__":
    main()
