"""Test helpers: comparing steps by what they say (not where they were read from), senders, subprocesses."""

from __future__ import annotations

import subprocess
from typing import Any

from otel_agent_eval.model import AgentRun, AssistantMessage, Step, ToolExecution


def step_facts(step: Step) -> tuple[Any, ...]:
    if isinstance(step, AssistantMessage):
        calls = tuple(
            (c.id, c.name, dict(c.arguments) if c.arguments is not None else c.raw_arguments) for c in step.tool_calls
        )
        return ("assistant", step.index, step.content, calls)
    if isinstance(step, ToolExecution):
        args = dict(step.arguments) if step.arguments is not None else None
        return ("tool", step.index, step.name, step.call_id, args, step.result, step.error)
    return ("user", step.index, step.content)


def run_facts(run: AgentRun) -> list[tuple[Any, ...]]:
    return [step_facts(s) for s in run.steps]


def send_greetings(endpoint: str, names: list[str], *, in_order: bool = False) -> None:
    """One short agent run per name (a user's hello, a model's answer) through the real SDK and OTLP/gRPC
    exporter. ``in_order``: one export per span, so the traces reach the processor in the order given."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from otel_agent_eval.instrument import agent_run

    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter) if in_order else BatchSpanProcessor(exporter))
    for i, name in enumerate(names):
        with agent_run(name, conversation_id=f"c{i}", tracer_provider=provider) as run:
            run.user_message("hello")
            with run.chat(model="m") as call:
                call.set_response(content="Hello!")
    provider.shutdown()


def stop_process(process: subprocess.Popen[Any], grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
