"""Cost of recording one agent step, side by side with a bare OpenTelemetry SDK span.

Run from the repository root::

    .venv/bin/python bench/overhead.py            # 7 rounds of 2000 steps per variant
    .venv/bin/python bench/overhead.py --quick    # smoke run: 3 rounds of 300 steps

Machines are shared and noisy, so every variant is measured in every round, in a shuffled order, and the
table reports medians over rounds: µs per step, and ratios computed within each round (so that a slow
round slows the baseline too) before taking their median.

All live variants write through one real SDK ``TracerProvider`` with a ``SimpleSpanProcessor`` feeding an
exporter that drops everything: export cost is equal for all and memory stays flat. The import path
(``RunSpanWriter``) builds its own provider and in-memory exporter, which it reads its spans back from and
clears on every call; that is part of what it costs.

The ``bare span + same attributes`` rows write by hand, in dict literals built on every iteration (with the
``json.dumps`` of the message), exactly the attributes the API writes for that step type; before timing,
the script checks that the two produce spans with the same names, kinds and attributes. The difference
between those rows and the API's is the API's own overhead; the difference between them and ``bare span``
is the inherent cost of the attributes.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

import otel_agent_eval
from otel_agent_eval.ingest.recorded import load_runs
from otel_agent_eval.instrument import AgentRunRecorder, ContentPolicy, RunSpanWriter, agent_run
from otel_agent_eval.model import AgentRun

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tau2" / "retail-gpt-4.1.json"

GOAL_RATIO = 1.5
GOAL_US = 50.0

StepFn = Callable[[int], None]
"""Records one step; the argument is the step's position in the loop."""

# --- one agent step of each type, with content of realistic size (τ²-bench retail medians) ------------------

MODEL = "gpt-4.1"
PROVIDER = "openai"
ORDER_ID = "#W2378156"
CALL_ID = "call_2xzbrH6DkKxcu4GnAB2Rdipb"
CONVERSATION_ID = "c-1"
TOOL_NAME = "get_order_details"
USER_TEXT = (
    "Hi, I need to check the status of my order #W2378156, and I would also like to change the shipping "
    "address to my new apartment."
)
PREFACE_TEXT = "Let me look up that order for you."
FINAL_TEXT = (
    "Your order #W2378156 was delivered on May 3. I have updated the shipping address on your account; "
    "is there anything else I can help you with?"
)


def tool_result() -> dict[str, Any]:
    """What the tool returns (about 1 kB of JSON, the median tool result in the τ² retail runs)."""
    return {
        "order_id": ORDER_ID,
        "user_id": "isabella_lopez_6490",
        "address": {
            "address1": "710 Sunset Drive",
            "address2": "Suite 855",
            "city": "Phoenix",
            "country": "USA",
            "state": "AZ",
            "zip": "85034",
        },
        "items": [
            {
                "name": "Water Bottle",
                "product_id": "8310926033",
                "item_id": "3453331371",
                "price": 52.79,
                "options": {"capacity": "500ml", "material": "stainless steel", "color": "black"},
            },
            {
                "name": "Hiking Boots",
                "product_id": "7363354090",
                "item_id": "8118291112",
                "price": 260.56,
                "options": {"size": "12", "material": "leather", "waterproof": "no"},
            },
            {
                "name": "Desk Lamp",
                "product_id": "6817146515",
                "item_id": "9190635437",
                "price": 153.23,
                "options": {"color": "black", "brightness": "low", "power source": "USB"},
            },
        ],
        "status": "delivered",
        "fulfillments": [{"tracking_id": ["843053632392"], "item_ids": ["3453331371", "8118291112", "9190635437"]}],
        "payment_history": [{"transaction_type": "payment", "amount": 466.58, "payment_method_id": "credit_card_89"}],
    }


def api_steps(run: AgentRunRecorder) -> dict[str, StepFn]:
    """The steps recorded through the manual API (the run numbers them itself)."""

    def user(i: int) -> None:
        run.user_message(USER_TEXT)

    def chat(i: int) -> None:
        with run.chat(model=MODEL) as c:
            c.set_response(
                content=PREFACE_TEXT,
                tool_calls=[{"id": CALL_ID, "name": TOOL_NAME, "arguments": {"order_id": ORDER_ID}}],
                finish_reason="tool_calls",
            )

    def tool(i: int) -> None:
        with run.tool(TOOL_NAME, call_id=CALL_ID, arguments={"order_id": ORDER_ID}) as t:
            t.set_result(tool_result())

    def answer(i: int) -> None:
        with run.chat(model=MODEL) as c:
            c.set_response(content=FINAL_TEXT, finish_reason="stop")

    return {"user": user, "chat": chat, "tool": tool, "answer": answer}


def hand_steps(tracer: Tracer) -> dict[str, StepFn]:
    """The same steps as bare SDK spans, their attributes written by hand.

    As with the API, what a model call or a tool produced is set when it is known, after the span started;
    and with the same SDK calls: a user turn is a span started and ended at once, never made current.
    """

    def user(i: int) -> None:
        tracer.start_span(
            "user_message",
            kind=SpanKind.INTERNAL,
            attributes={
                "agent_eval.step.index": i,
                "agent_eval.step.kind": "user",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": USER_TEXT}]}]
                ),
            },
        ).end()

    def chat(i: int) -> None:
        with tracer.start_as_current_span(
            "chat gpt-4.1",
            kind=SpanKind.CLIENT,
            attributes={
                "agent_eval.step.index": i,
                "agent_eval.step.kind": "assistant",
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": MODEL,
                "gen_ai.conversation.id": CONVERSATION_ID,
            },
        ) as span:
            span.set_attributes(
                {
                    "gen_ai.response.finish_reasons": ["tool_calls"],
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [
                                    {"type": "text", "content": PREFACE_TEXT},
                                    {
                                        "type": "tool_call",
                                        "id": CALL_ID,
                                        "name": TOOL_NAME,
                                        "arguments": {"order_id": ORDER_ID},
                                    },
                                ],
                                "finish_reason": "tool_call",
                            }
                        ]
                    ),
                }
            )

    def tool(i: int) -> None:
        with tracer.start_as_current_span(
            "execute_tool get_order_details",
            kind=SpanKind.INTERNAL,
            attributes={
                "agent_eval.step.index": i,
                "agent_eval.step.kind": "tool",
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": TOOL_NAME,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": CALL_ID,
                "gen_ai.conversation.id": CONVERSATION_ID,
                "gen_ai.tool.call.arguments": json.dumps({"order_id": ORDER_ID}),
            },
        ) as span:
            span.set_attribute("gen_ai.tool.call.result", json.dumps(tool_result()))

    def answer(i: int) -> None:
        with tracer.start_as_current_span(
            "chat gpt-4.1",
            kind=SpanKind.CLIENT,
            attributes={
                "agent_eval.step.index": i,
                "agent_eval.step.kind": "assistant",
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": MODEL,
                "gen_ai.conversation.id": CONVERSATION_ID,
            },
        ) as span:
            span.set_attributes(
                {
                    "gen_ai.response.finish_reasons": ["stop"],
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": FINAL_TEXT}],
                                "finish_reason": "stop",
                            }
                        ]
                    ),
                }
            )

    return {"user": user, "chat": chat, "tool": tool, "answer": answer}


def bare_step(tracer: Tracer) -> StepFn:
    def step(i: int) -> None:
        with tracer.start_as_current_span("x"):
            pass

    return step


MIX = ("user", "chat", "tool", "answer")
"""One turn of an agent loop: 1 user message, 2 model calls, 1 tool call (τ² retail: 26% / 47% / 27%)."""

SINGLE = {"user": "user_message", "chat": "chat + set_response", "tool": "tool + set_result"}


# --- provider, timing --------------------------------------------------------------------------------------


class DropExporter(SpanExporter):
    """Accepts every span and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def make_provider(exporter: SpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


CONTENT = ContentPolicy(capture=True)  # explicit, so the environment cannot change what is measured


def timed_loop(fns: Sequence[StepFn], n: int) -> int:
    """Nanoseconds to run ``n`` steps, cycling through ``fns``, with the garbage collector off."""
    k = len(fns)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for i in range(n):
            fns[i % k](i)
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


@contextmanager
def parent_span(tracer: Tracer) -> Iterator[None]:
    with tracer.start_as_current_span("parent"):
        yield


@dataclass
class Variant:
    label: str
    group: str
    """``bare``, ``hand``, ``api`` or ``import``."""
    kind: str
    """The step type (``user``, ``chat``, ``tool``, ``mix``), for the ratio to the hand-written row."""
    measure: Callable[[int], tuple[int, int]]
    """Runs about ``n`` steps; returns (nanoseconds, steps)."""
    us: list[float] = field(default_factory=list)
    vs_bare: list[float] = field(default_factory=list)
    vs_hand: list[float] = field(default_factory=list)


def make_variants(tracer: Tracer, provider: TracerProvider, writer: RunSpanWriter, record: AgentRun) -> list[Variant]:
    def bare(n: int) -> tuple[int, int]:
        with parent_span(tracer):
            return timed_loop([bare_step(tracer)], n), n

    def hand(names: Sequence[str]) -> Callable[[int], tuple[int, int]]:
        def measure(n: int) -> tuple[int, int]:
            steps = hand_steps(tracer)
            with parent_span(tracer):
                return timed_loop([steps[name] for name in names], n), n

        return measure

    def api(names: Sequence[str]) -> Callable[[int], tuple[int, int]]:
        def measure(n: int) -> tuple[int, int]:
            with agent_run(
                "bench", conversation_id=CONVERSATION_ID, provider=PROVIDER, tracer_provider=provider, content=CONTENT
            ) as run:
                steps = api_steps(run)
                return timed_loop([steps[name] for name in names], n), n

        return measure

    def import_run(n: int) -> tuple[int, int]:
        reps = max(1, math.ceil(n / len(record.steps)))
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in range(reps):
                writer.spans(record)
            return time.perf_counter_ns() - start, reps * len(record.steps)
        finally:
            gc.enable()

    mix_label = "mix (user, chat, tool, chat)"
    variants = [Variant("bare span", "bare", "span", bare)]
    for kind, what in [("user", "user message"), ("chat", "chat"), ("tool", "tool"), ("mix", mix_label)]:
        names = MIX if kind == "mix" else (kind,)
        variants.append(Variant(f"bare span + same attributes: {what}", "hand", kind, hand(names)))
    for kind in ("user", "chat", "tool", "mix"):
        names = MIX if kind == "mix" else (kind,)
        what = mix_label if kind == "mix" else SINGLE[kind]
        variants.append(Variant(f"otel-agent-eval: {what}", "api", kind, api(names)))
    source = f"#{record.source.index}" if record.source else "run"
    variants.append(
        Variant(f"import: RunSpanWriter.spans (τ² {source}, {len(record.steps)} steps)", "import", "import", import_run)
    )
    return variants


# --- checks -----------------------------------------------------------------------------------------------


def span_shapes(spans: Sequence[ReadableSpan]) -> list[tuple[str, SpanKind, dict[str, Any]]]:
    return [(s.name, s.kind, dict(s.attributes or {})) for s in spans]


def check_same_attributes() -> None:
    """The hand-written spans must be what the API writes, or the comparison means nothing."""
    exporter = InMemorySpanExporter()
    provider = make_provider(exporter)
    tracer = provider.get_tracer("bench")
    with parent_span(tracer):
        hand = hand_steps(tracer)
        for i, name in enumerate(MIX):
            hand[name](i)
    hand_spans = span_shapes(exporter.get_finished_spans()[:-1])
    exporter.clear()
    with agent_run(
        "bench", conversation_id=CONVERSATION_ID, provider=PROVIDER, tracer_provider=provider, content=CONTENT
    ) as run:
        api = api_steps(run)
        for i, name in enumerate(MIX):
            api[name](i)
    api_spans = span_shapes(exporter.get_finished_spans()[:-1])
    provider.shutdown()
    if hand_spans != api_spans:
        for h, a in zip(hand_spans, api_spans, strict=True):
            if h != a:
                print(f"hand: {h}\napi:  {a}", file=sys.stderr)
        raise SystemExit("the hand-written spans differ from the API's: fix hand_steps() before measuring")


def pick_run(path: Path) -> AgentRun:
    """The run of median length in the file."""
    runs = sorted((r for r in load_runs(path) if isinstance(r, AgentRun)), key=lambda r: len(r.steps))
    if not runs:
        raise SystemExit(f"{path}: no runs")
    return runs[len(runs) // 2]


# --- main -------------------------------------------------------------------------------------------------


def fmt_ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}×" if values else "—"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (after one warm-up round)")
    parser.add_argument("--steps", type=int, default=2000, help="steps per variant per round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 rounds of 300 steps")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="τ² run file for the import path")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order of the variants in each round")
    args = parser.parse_args(argv)
    rounds, steps = (3, 300) if args.quick else (args.rounds, args.steps)
    if rounds < 1 or steps < 1:
        parser.error("--rounds and --steps must be positive")
    if not args.data.is_file():
        parser.error(f"{args.data}: no such file (needed for the import path; see --data)")

    check_same_attributes()
    provider = make_provider(DropExporter())
    tracer = provider.get_tracer("bench")
    writer = RunSpanWriter()
    record = pick_run(args.data)
    variants = make_variants(tracer, provider, writer, record)
    bare = variants[0]
    hand = {v.kind: v for v in variants if v.group == "hand"}

    rng = random.Random(args.seed)
    for r in range(rounds + 1):  # round 0 warms up and is not kept
        order = list(variants)
        rng.shuffle(order)
        per_step = {}
        for v in order:
            elapsed, n = v.measure(steps)
            per_step[v.label] = elapsed / n / 1000
        if r == 0:
            continue
        for v in variants:
            us = per_step[v.label]
            v.us.append(us)
            v.vs_bare.append(us / per_step[bare.label])
            if v.kind in hand:
                v.vs_hand.append(us / per_step[hand[v.kind].label])
    writer.shutdown()
    provider.shutdown()

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), os.cpu_count() = {os.cpu_count()}, "
        f"otel-agent-eval {otel_agent_eval.__version__}"
    )
    print(f"{rounds} rounds (+1 warm-up) × {steps} steps per variant, variants shuffled in each round.")
    print("µs/step is the median over rounds; ratios are medians of the ratios within each round.\n")
    print("| variant | µs/step | × bare span | × bare span + same attributes |")
    print("|---|---:|---:|---:|")
    for v in variants:
        print(f"| {v.label} | {statistics.median(v.us):.2f} | {fmt_ratio(v.vs_bare)} | {fmt_ratio(v.vs_hand)} |")
    print(
        f"\n`bare span` ranged {min(bare.us):.1f}–{max(bare.us):.1f} µs/step over the rounds: compare ratios, "
        "not µs, between runs or machines."
    )
    print(
        f"Goal: at most {GOAL_RATIO}× `bare span` (an SDK span with no attributes, under a parent span) "
        f"and under {GOAL_US:.0f} µs per step."
    )
    for v in variants:
        if v.group not in ("api", "import"):
            continue
        ratio, us = statistics.median(v.vs_bare), statistics.median(v.us)
        ok_ratio, ok_us = ratio <= GOAL_RATIO, us < GOAL_US
        verdict = "met" if ok_ratio and ok_us else "NOT met"
        print(
            f"- {v.label}: {ratio:.2f}× bare span ({'ok' if ok_ratio else 'over'}), "
            f"{us:.1f} µs ({'ok' if ok_us else 'over'}) → {verdict}"
        )


if __name__ == "__main__":
    main()
