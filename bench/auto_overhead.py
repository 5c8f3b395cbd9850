"""Overhead of the auto-instrumentation on a model call answered by a local server.

Run from the repository root::

    .venv/bin/python bench/auto_overhead.py            # 31 rounds of 60 calls per variant and kind
    .venv/bin/python bench/auto_overhead.py --quick    # smoke run: 3 rounds of 60

Goal (issue 6, item 4): an instrumented call costs under 5% more than the same call uninstrumented.

**Servers.** ``tests/llm_server.py`` in a subprocess (so that the server does not share the client's
interpreter lock), speaking the OpenAI chat-completions API on loopback, one per kind of call, each scripted
with as many copies of one reply as the run makes (calls of a kind must be alike, or their median jumps
between two kinds of reply): a typical agent turn, one tool call with JSON arguments (``chat``), or a
40-word answer read to its end (``chat, streamed``).

**Client.** The real ``openai`` SDK (``max_retries=0``), one client reused, a 12-message conversation
(system, user, assistant tool calls, tool results) with two tool definitions, as an agent sends at each
step. Each call is timed on its own, wall clock (``perf_counter_ns``, what the agent waits for); the
streamed variant includes reading the whole stream.

**Variants**, each measured in every round, in shuffled order, instrumented just before its block and
uninstrumented after it: ``bare`` (no instrumentation), ``otel-agent-eval`` (our ``OpenAIInstrumentor``), and
for comparison ``openinference`` (OpenInference's OpenAI instrumentor) when installed. Spans go through the
real SDK: a ``TracerProvider`` with a ``BatchSpanProcessor`` (what an application uses) and an exporter that
drops them. The overhead of a variant is the median over rounds of (its median ÷ bare's median in the same
round) - 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openai
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import otel_agent_eval

REPO = Path(__file__).resolve().parent.parent
GOAL = 0.05
clock = time.perf_counter_ns

SERVER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # the servers on one core, the client on another
from llm_server import LLMServer, openai_chat
n, streamed = int(sys.argv[2]), sys.argv[3] == "streamed"
text = " ".join(f"word{i}" for i in range(40))
call = ("call_9", "get_order", {"order_id": "#W2"})
with LLMServer() as server:
    for _ in range(n):  # every call of a kind gets the same answer, so that calls are alike
        server.script(openai_chat(text) if streamed else openai_chat(tool_calls=[call]))
    print(server.openai_base_url, flush=True)
    sys.stdin.read()  # until the parent closes it
"""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name.replace('_', ' ')} of the user's order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
    for name in ("get_order", "cancel_order")
]


def conversation() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a shop assistant. Confirm before cancelling anything. " * 5},
        {"role": "user", "content": "Hi, I'd like to check my orders #W1 and #W2 please."},
    ]
    for i in range(1, 6):
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "get_order", "arguments": '{"order_id": "#W1"}'},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        result = {"order_id": "#W1", "status": "pending", "items": [{"name": "lamp", "price": 59.9}] * 3}
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": json.dumps(result)})
    return messages


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def instrumentors() -> dict[str, Callable[[], Any] | None]:
    from otel_agent_eval.instrument.auto.openai import OpenAIInstrumentor

    out: dict[str, Callable[[], Any] | None] = {"bare": None, "otel-agent-eval": OpenAIInstrumentor}
    try:
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference

        out["openinference"] = OpenInference
    except ImportError:
        pass
    return out


def measure(client: openai.OpenAI, stream: bool, n: int) -> tuple[list[int], list[int]]:
    """``n`` calls: the wall time of each, and the CPU time of this process during each (all threads: the
    span processor's work counts)."""
    messages = conversation()
    wall, cpu = [], []
    for _ in range(n):
        start, start_cpu = clock(), time.process_time_ns()
        if stream:
            for _chunk in client.chat.completions.create(
                model="gpt-test",
                messages=messages,  # type: ignore[arg-type]
                tools=TOOLS,  # type: ignore[arg-type]
                stream=True,
            ):
                pass
        else:
            client.chat.completions.create(model="gpt-test", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
        wall.append(clock() - start)
        cpu.append(time.process_time_ns() - start_cpu)
    return wall, cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--n", type=int, default=60, help="calls per variant per round and kind")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 60")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.n = 3, 60
    variants = instrumentors()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        # The client on one core, the servers (started below, after this) on another: calls that migrate between
        # cores, or share one with the server, take twice as long now and then, and the medians jump.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    kinds = {"chat": False, "chat, streamed": True}
    warmup = 20
    calls = args.rounds * args.n * len(variants) + warmup
    servers = {
        kind: subprocess.Popen(
            [sys.executable, "-c", SERVER, str(REPO / "tests"), str(calls), "streamed" if stream else "plain"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for kind, stream in kinds.items()
    }
    urls = {kind: server.stdout.readline().strip() for kind, server in servers.items() if server.stdout}
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    rng = random.Random(args.seed)
    samples: dict[tuple[str, str, str], list[int]] = {}  # (variant, kind, "wall" | "cpu")
    ratios: dict[tuple[str, str, str], list[float]] = {}
    print(
        f"# Auto-instrumentation overhead: otel-agent-eval {otel_agent_eval.__version__}, openai {openai.__version__}"
    )
    print(f"\ncommand: .venv/bin/python bench/auto_overhead.py{' --quick' if args.quick else ''}")
    print(f"{args.rounds} rounds × {args.n} calls per variant and kind; one server subprocess per kind")
    clients = {kind: openai.OpenAI(base_url=url, api_key="bench", max_retries=0) for kind, url in urls.items()}
    try:
        for kind, stream in kinds.items():
            measure(clients[kind], stream, warmup)  # warm up the connection and the SDK
        for _ in range(args.rounds):
            medians: dict[tuple[str, str, str], float] = {}
            order = list(variants)
            rng.shuffle(order)
            for name in order:
                factory = variants[name]
                instrumentor = factory() if factory is not None else None
                if instrumentor is not None:
                    instrumentor.instrument(tracer_provider=provider)
                try:
                    for kind, stream in kinds.items():
                        taken = measure(clients[kind], stream, args.n)
                        for clock_name, values in zip(("wall", "cpu"), taken, strict=True):
                            samples.setdefault((name, kind, clock_name), []).extend(values)
                            medians[(name, kind, clock_name)] = statistics.median(values)
                finally:
                    if instrumentor is not None:
                        instrumentor.uninstrument()
            for (name, kind, clock_name), median in medians.items():
                ratios.setdefault((name, kind, clock_name), []).append(median / medians[("bare", kind, clock_name)])
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=10)
        provider.shutdown()
    print("\n| variant | kind | calls | wall p50 µs | wall p99 µs | CPU p50 µs | overhead, wall | overhead, CPU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    met = True
    for name in variants:
        for kind in kinds:
            wall = sorted(samples[(name, kind, "wall")])
            cpu = samples[(name, kind, "cpu")]
            over = {c: statistics.median(ratios[(name, kind, c)]) - 1 for c in ("wall", "cpu")}
            if name == "otel-agent-eval" and over["wall"] >= GOAL:
                met = False
            print(
                f"| {name} | {kind} | {len(wall)} | {statistics.median(wall) / 1000:.0f} | "
                f"{wall[int(0.99 * (len(wall) - 1))] / 1000:.0f} | {statistics.median(cpu) / 1000:.0f} | "
                f"{over['wall'] * 100:+.1f}% | {over['cpu'] * 100:+.1f}% |"
            )
    print("\noverhead: median over rounds of (variant median ÷ bare median in the same round) - 1; spread:")
    for (name, kind, clock_name), values in sorted(ratios.items()):
        if name != "bare" and clock_name == "wall":
            low, _, high = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
            print(f"- {name}, {kind}: middle half of the rounds {(low - 1) * 100:+.1f}% to {(high - 1) * 100:+.1f}%")
    print(f"goal (otel-agent-eval's wall-time overhead < 5% on every kind): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
