"""CPU time to evaluate a 30-step agent run with all built-in detectors, against baselines on the same runs.

Run from the repository root::

    .venv/bin/python bench/speed.py              # 7 rounds of 200 evaluations per variant
    .venv/bin/python bench/speed.py --quick      # smoke run: 3 rounds of 30
    .venv/bin/python bench/speed.py --profile    # also: where the time goes, by function (cProfile)

The goal (issue 3, item 10): a 30-step run evaluated in under 2 ms of CPU with the built-in detectors, so
that the same code fits in the agent loop and at collector rates.

**Runs.** Real runs, cut to exactly 30 steps with ``run.prefix(30)``: every run of at least 30 steps in
``tau2/retail-gpt-4.1.json`` (with the retail tool definitions) is the headline set; the runs of at least
30 steps in ``tau-bench/airline-gpt-4o-tasks-00-24.json`` (airline tools; the system message is the policy,
so 31 messages) are measured the same way as a second set. Evaluations cycle through the runs of a set.

**Clock.** CPU time of this process, ``time.process_time_ns()``, with the garbage collector off in every
timed section (collected before). Each evaluation is timed on its own (mean, median and p99 over all
samples); the goal is judged on the mean. Machines are shared and noisy, so every variant is measured in
every round, in a shuffled order; figures are medians over rounds of each round's mean, and ratios are taken
within a round before their median.

**Breakdown.** One evaluation taken apart as ``Engine.evaluate`` does it, each part timed on its own: the
context (the policy pack resolved for the run, cached across runs), then the shared facts
(``context.facts``: tool calls matched to their executions, the corpus of what the agent was told, tool
results decoded as JSON, writes, user messages), which are lazy and would otherwise be paid for by whichever
detector touches them first, so they are built first and timed apart; then each evaluator's ``evaluate``
in the engine's order on that context; then ``Evaluation.of`` (sorting, outcome, score). A fresh context
per evaluation, so nothing is reused from one evaluation to the next. The cost of reading the clock is
measured and subtracted from each part.

**Cold and warm.** The evaluator caches what it works out of a text by the text itself (tool results decoded
as JSON, lower-cased texts, refusal tests, unavailable items, numbers), because the in-loop guard and the
processor's early evaluations see the same earlier messages again and again. Evaluating the same runs over
and over would find those caches full, so before each timed evaluation (untimed) they are emptied: the
figures are those of a run seen for the first time (``cold``). ``warm`` (the caches left as the previous
evaluation of the same run left them) is measured in the same rounds and shown beside it.

**Baselines**, on the same runs in the same rounds: ``copy`` (``dataclasses.replace(run)`` and a walk over
its steps), ``json.dumps`` of the run's recorded messages, ``json.loads`` of that text, and ``read`` (that
text parsed and turned into steps, as the importer does: what it costs merely to load the run).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import otel_agent_eval
from otel_agent_eval.evaluate import Engine
from otel_agent_eval.evaluate.engine import RunContext
from otel_agent_eval.evaluate.findings import Evaluation, Finding
from otel_agent_eval.ingest.messages import messages_to_steps, parse_openai_message
from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.model import AgentRun

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
STEPS = 30
GOAL_MS = 2.0
clock = time.process_time_ns


# --- runs --------------------------------------------------------------------------------------------------


@dataclass
class RunSet:
    label: str
    runs: list[AgentRun]
    texts: list[str]
    """The JSON of each run's recorded messages (those its 30 steps came from)."""
    skipped_short: int

    def describe(self) -> str:
        return (
            f"{self.label}: {len(self.runs)} runs of ≥ {STEPS} steps cut to {STEPS} "
            f"({self.skipped_short} shorter runs left out)"
        )


def load_set(label: str, path: Path, tools_path: Path) -> RunSet:
    data = json.loads(path.read_text(encoding="utf-8"))
    tools = load_tools(tools_path)
    runs, texts, short = [], [], 0
    for item in load_runs(path, tools=tools):
        if not isinstance(item, AgentRun) or item.source is None:
            continue
        if len(item.steps) < STEPS:
            short += 1
            continue
        run = item.prefix(STEPS)
        if isinstance(data, dict):  # τ²
            raw = data["simulations"][item.source.index]["messages"]
        else:  # τ-bench
            raw = data[item.source.index]["traj"]
        runs.append(run)
        texts.append(json.dumps(raw[: run.steps[-1].index + 1], ensure_ascii=False))
    return RunSet(label, runs, texts, short)


# --- timing ------------------------------------------------------------------------------------------------


def timer_overhead(n: int = 2000) -> int:
    """Nanoseconds between two back-to-back clock reads (median): subtracted from each timed part."""
    samples = []
    for _ in range(n):
        a = clock()
        b = clock()
        samples.append(b - a)
    return int(statistics.median(samples))


class gc_off:
    def __enter__(self) -> None:
        gc.collect()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        gc.enable()


def clear_text_caches() -> None:
    """Empty the evaluator's caches keyed by text (what a run seen for the first time finds)."""
    from otel_agent_eval.evaluate import actions, facts, text
    from otel_agent_eval.evaluate.detectors import tool_outputs

    # Every cache across runs, those keyed by the tools too (an agent never seen brings tools never seen).
    caches = (facts.decoded_json, facts._tool_verbs, text.lowered, text.refuses, text.numbers_in)
    caches += (tool_outputs._unavailable_in, actions.stem, actions.same_verb, actions._name_words)
    for cache in caches:
        cache.cache_clear()


def time_each(fn: Callable[[int], object], n: int, before: Callable[[], None] | None = None) -> list[int]:
    """CPU nanoseconds of each of ``n`` calls ``fn(i)`` (``before()`` runs untimed ahead of each)."""
    samples = []
    with gc_off():
        for i in range(n):
            if before is not None:
                before()
            start = clock()
            fn(i)
            samples.append(clock() - start)
    return samples


def time_batch(fn: Callable[[int], object], n: int) -> float:
    """Mean CPU nanoseconds per call over ``n`` calls ``fn(i)`` timed together (for calls of a few µs)."""
    with gc_off():
        start = clock()
        for i in range(n):
            fn(i)
        return (clock() - start) / n


def touch_facts(context: RunContext) -> None:
    """Build every lazily computed shared fact of the run (each ``cached_property`` of ``context.facts``)."""
    facts = context.facts
    for name, attr in vars(type(facts)).items():
        if isinstance(attr, cached_property):
            getattr(facts, name)


def decompose(engine: Engine, runs: Sequence[AgentRun], n: int, overhead: int) -> dict[str, list[int]]:
    """``n`` evaluations taken apart: context, facts, each evaluator, Evaluation.of (ns per part per call)."""
    parts: dict[str, list[int]] = defaultdict(list)
    k = len(runs)
    with gc_off():
        for i in range(n):
            run = runs[i % k]
            clear_text_caches()
            t0 = clock()
            context = engine.context(run)
            t1 = clock()
            touch_facts(context)
            t2 = clock()
            parts["context (policy pack)"].append(t1 - t0 - overhead)
            parts["facts build"].append(t2 - t1 - overhead)
            findings: list[Finding] = []
            for evaluator in engine.evaluators:
                a = clock()
                with contextlib.suppress(Exception):  # as in the engine: a broken evaluator stops no other
                    findings.extend(evaluator.evaluate(run, context))
                b = clock()
                parts[evaluator.name].append(b - a - overhead)
            a = clock()
            Evaluation.of(run, findings)
            b = clock()
            parts["Evaluation.of"].append(b - a - overhead)
    return parts


@dataclass
class Figures:
    """Per variant: the round means (ns), and for the whole evaluation every sample."""

    round_means: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    samples: list[int] = field(default_factory=list)
    per_run: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    ratios: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


BASELINES = ("copy", "json.dumps", "json.loads", "read")


def measure(engine: Engine, runs: RunSet, rounds: int, n: int, overhead: int, seed: int) -> Figures:
    k = len(runs.runs)
    messages = [json.loads(t) for t in runs.texts]

    def evaluate(i: int) -> object:
        return engine.evaluate(runs.runs[i % k])

    def copy(i: int) -> object:
        run = replace(runs.runs[i % k])
        total = 0
        for step in run.steps:
            total += step.index
        return total

    def dumps(i: int) -> object:
        return json.dumps(messages[i % k], ensure_ascii=False)

    def loads(i: int) -> object:
        return json.loads(runs.texts[i % k])

    def read(i: int) -> object:
        raw = json.loads(runs.texts[i % k])
        return messages_to_steps(parse_openai_message(m, field=f"[{j}]") for j, m in enumerate(raw))

    baseline_fns = {"copy": copy, "json.dumps": dumps, "json.loads": loads, "read": read}
    for i in range(3 * k):  # warm up: compiled patterns, schema validators, the policy cache
        evaluate(i)
        read(i)
    figures = Figures()
    rng = random.Random(seed)
    for _ in range(rounds):
        variants = ["evaluate", "warm", "breakdown", *BASELINES]
        rng.shuffle(variants)
        this: dict[str, float] = {}
        for variant in variants:
            if variant == "warm":
                this["warm"] = sum(time_each(evaluate, n)) / n
            elif variant == "evaluate":
                samples = time_each(evaluate, n, before=clear_text_caches)
                figures.samples += samples
                for i, s in enumerate(samples):
                    figures.per_run[i % k].append(s)
                this["evaluate"] = sum(samples) / n
            elif variant == "breakdown":
                parts = decompose(engine, runs.runs, n, overhead)
                for name, values in parts.items():
                    this[name] = max(0.0, sum(values) / n)
                this["sum of parts"] = sum(sum(v) for v in parts.values()) / n
            else:
                this[variant] = time_batch(baseline_fns[variant], n)
        for name, value in this.items():
            figures.round_means[name].append(value)
        for name in BASELINES:
            figures.ratios[name].append(this["evaluate"] / this[name])
    return figures


# --- printing ----------------------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[int]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def report(engine: Engine, runs: RunSet, figures: Figures, rounds: int, n: int) -> dict[str, Any]:
    means = figures.round_means
    mean_ms = med(means["evaluate"]) / 1e6
    median_ms = med(figures.samples) / 1e6
    p99_ms = p99(figures.samples) / 1e6
    print(f"\n## {runs.describe()}\n")
    print(f"{rounds} rounds × {n} evaluations; {len(figures.samples)} timed evaluations in all.\n")
    print("| per evaluation of a 30-step run | mean ms | median ms | p99 ms | min round mean | max round mean |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| `Engine().evaluate(run)`, {len(engine.evaluators)} evaluators, cold | {mean_ms:.3f} | {median_ms:.3f} | "
        f"{p99_ms:.3f} | {min(means['evaluate']) / 1e6:.3f} | {max(means['evaluate']) / 1e6:.3f} |"
    )
    print(
        f"| the same, warm (texts seen before) | {med(means['warm']) / 1e6:.3f} | | | "
        f"{min(means['warm']) / 1e6:.3f} | {max(means['warm']) / 1e6:.3f} |"
    )
    per_run = sorted(((med(v), i) for i, v in figures.per_run.items()), reverse=True)

    def name(i: int) -> str:
        src = runs.runs[i].source
        return f"#{src.index}" if src else f"[{i}]"

    print(
        "\nper run (median of its evaluations): slowest "
        + ", ".join(f"{name(i)} {v / 1e6:.2f} ms" for v, i in per_run[:3])
        + "; fastest "
        + ", ".join(f"{name(i)} {v / 1e6:.2f} ms" for v, i in per_run[-3:])
    )

    parts = ["context (policy pack)", "facts build", *(e.name for e in engine.evaluators), "Evaluation.of"]
    total = med(means["sum of parts"])
    print("\nBreakdown (µs per evaluation, median over rounds; facts built before the detectors and timed apart):\n")
    print("| part | µs | share |")
    print("|---|---:|---:|")
    rows = sorted(((med(means[p]), p) for p in parts), reverse=True)
    for value, part in rows:
        print(f"| {part} | {value / 1e3:.1f} | {100 * value / total:.1f}% |")
    print(f"| **sum of parts** | **{total / 1e3:.1f}** | 100% |")
    print(f"| whole `evaluate` (for comparison) | {med(means['evaluate']) / 1e3:.1f} | |")

    print("\nBaselines on the same runs (µs per run; evaluate ÷ baseline is the median of per-round ratios):\n")
    print("| baseline | µs | evaluate ÷ baseline |")
    print("|---|---:|---:|")
    what = {
        "copy": "copy: `dataclasses.replace(run)` + walk the steps",
        "json.dumps": "`json.dumps` of the run's messages",
        "json.loads": "`json.loads` of the run's messages",
        "read": "read: `json.loads` + parse the messages into steps",
    }
    for b in BASELINES:
        print(f"| {what[b]} | {med(means[b]) / 1e3:.2f} | {med(figures.ratios[b]):.1f}× |")
    met = mean_ms < GOAL_MS
    print(
        f"\nGoal < {GOAL_MS:g} ms of CPU per 30-step run (mean): {mean_ms:.3f} ms: "
        f"{'met' if met else 'NOT met'} (median {median_ms:.3f} ms, p99 {p99_ms:.3f} ms; "
        f"{mean_ms / GOAL_MS:.2f}× the budget)."
    )
    return {
        "set": runs.label,
        "runs": len(runs.runs),
        "mean_ms": mean_ms,
        "median_ms": median_ms,
        "p99_ms": p99_ms,
        "goal_met": met,
        "parts_us": {p: med(means[p]) / 1e3 for p in parts},
        "baselines_us": {b: med(means[b]) / 1e3 for b in BASELINES},
        "ratios": {b: med(figures.ratios[b]) for b in BASELINES},
    }


def profile(engine: Engine, runs: RunSet, n: int) -> None:
    k = len(runs.runs)
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for i in range(n):
        engine.evaluate(runs.runs[i % k])
    profiler.disable()
    print(f"\n### Profile: {n} evaluations of {runs.label}, top 25 functions by own time\n")
    print("```")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    print("```")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 rounds of 30 evaluations")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7; 3 with --quick)")
    parser.add_argument("--per-round", type=int, default=None, help="evaluations per round (default 200; 30 quick)")
    parser.add_argument("--data", type=Path, default=DATA, help="the data directory (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the evaluations")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    n = args.per_round or (30 if args.quick else 200)

    sets = [
        load_set(
            "tau2/retail-gpt-4.1.json",
            args.data / "tau2" / "retail-gpt-4.1.json",
            args.data / "tau-bench" / "retail-tools.json",
        ),
        load_set(
            "tau-bench/airline-gpt-4o-tasks-00-24.json",
            args.data / "tau-bench" / "airline-gpt-4o-tasks-00-24.json",
            args.data / "tau-bench" / "airline-tools.json",
        ),
    ]
    engine = Engine()
    overhead = timer_overhead()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"# Speed benchmark: otel-agent-eval {otel_agent_eval.__version__}")
    print(
        f"\nPython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs"
        + (f", load average {load[0]:.2f}" if load else "")
        + f"; clock: time.process_time_ns, reading it costs {overhead} ns (subtracted from the breakdown)."
    )
    print(f"evaluators ({len(engine.evaluators)}): {', '.join(e.name for e in engine.evaluators)}")
    results = []
    for index, runs in enumerate(sets):
        if not runs.runs:
            print(f"\n{runs.label}: no run of {STEPS} steps or more; skipped")
            continue
        figures = measure(engine, runs, rounds, n, overhead, seed=index)
        results.append(report(engine, runs, figures, rounds, n))
        if args.profile:
            profile(engine, runs, n)
    met = all(r["goal_met"] for r in results)
    print(
        f"\nGoal < {GOAL_MS:g} ms of CPU per 30-step run with the built-in detectors: "
        + ("met" if met else "NOT met")
        + " ("
        + "; ".join(f"{r['set']}: mean {r['mean_ms']:.2f} ms" for r in results)
        + ")."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rounds": rounds, "per_round": n, "sets": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
