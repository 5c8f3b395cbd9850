"""Latency of one guard check for a 30-step history, in process (and over gRPC on loopback when available).

Run from the repository root::

    .venv/bin/python bench/guard_latency.py              # 7 rounds of 300 checks per variant
    .venv/bin/python bench/guard_latency.py --quick      # smoke run: 3 rounds of 50
    .venv/bin/python bench/guard_latency.py --profile    # also: where the time of a check goes (cProfile)

Goals (issue 5, item 3): ``Guard.check`` p99 < 1 ms in process, < 5 ms over gRPC on loopback, for a 30-step
history.

**Histories.** Real runs: every run with at least 31 steps and an assistant step at position 30 or later, in
``tau2/retail-gpt-4.1.json`` (retail tools) and ``tau-bench/airline-gpt-4o-tasks-00-24.json`` (airline tools; its
policy is the system message). The history is ``run.prefix(30)``, the proposed step the run's first assistant
step at position ≥ 30 (``Engine.check`` renumbers it to follow the history). The guard sees the runs without
their benchmark answers. Checks cycle through the histories of a set.

**Clock.** Wall time, ``time.perf_counter_ns()`` (what the agent loop waits for), each check timed on its own,
with the garbage collector off in every timed section (collected before), as in ``bench/speed.py``. Every
variant is measured in every round, in a shuffled order; p50 and p99 are over all samples of all rounds, and
the median over rounds of each round's p99 is shown beside them.

**Variants.** ``guard``: ``Guard.check(history, proposed)`` with an ``AgentRun`` history, one ``Guard`` per set
(built once: its ``Engine`` and policy packs). ``baseline``: building the history as the check gets it,
``run.prefix(30)`` then ``with_tools`` on a copy without tools (what any check costs before evaluating).
``remote``: ``RemoteGuard.check`` against ``add_evaluation_service`` on a loopback gRPC server in this process,
when ``otel_agent_eval.hook.remote`` and ``otel_agent_eval.hook.service`` provide them.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import otel_agent_eval
from otel_agent_eval.evaluate import Engine, PackLibrary
from otel_agent_eval.hook.guard import Guard
from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.model import AgentRun, AssistantMessage, Step, ToolDefinition, ToolExecution

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
STEPS = 30
GOAL_LOCAL_MS = 1.0
GOAL_REMOTE_MS = 5.0
clock = time.perf_counter_ns


@dataclass
class Case:
    run: AgentRun
    """The whole run (answers removed)."""
    history: AgentRun
    proposed: Step
    messages: list[dict[str, Any]]
    """The history as OpenAI-style messages (the system message first when the run has a policy)."""
    proposed_message: dict[str, Any]


@dataclass
class CaseSet:
    label: str
    tools: tuple[ToolDefinition, ...]
    cases: list[Case]
    left_out: int


def load_set(label: str, path: Path, tools_path: Path) -> CaseSet:
    tools = load_tools(tools_path)
    cases, left_out = [], 0
    for item in load_runs(path, tools=tools):
        if not isinstance(item, AgentRun):
            continue
        run = replace(item, reference=None, outcome=None)
        proposed = next((s for s in run.steps[STEPS:] if isinstance(s, AssistantMessage)), None)
        if proposed is None:
            left_out += 1
            continue
        history = run.prefix(STEPS)
        messages = [to_message(step) for step in history.steps]
        if history.system_instructions is not None:
            messages.insert(0, {"role": "system", "content": history.system_instructions})
        cases.append(Case(run, history, proposed, messages, to_message(proposed)))
    return CaseSet(label, tools, cases, left_out)


def to_message(step: Step) -> dict[str, Any]:
    """A step as an OpenAI-style chat message (what an agent loop holds, and what ``RemoteGuard`` sends)."""
    if isinstance(step, AssistantMessage):
        out: dict[str, Any] = {"role": "assistant", "content": step.content}
        if step.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
                for c in step.tool_calls
            ]
        return out
    if isinstance(step, ToolExecution):
        content = step.result if step.error is None else f"Error: {step.error}"
        return {"role": "tool", "tool_call_id": step.call_id or "", "name": step.name, "content": content or ""}
    return {"role": "user", "content": step.content or ""}


class gc_off:
    def __enter__(self) -> None:
        gc.collect()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        gc.enable()


def time_each(fn: Callable[[int], object], n: int) -> list[int]:
    samples = []
    with gc_off():
        for i in range(n):
            start = clock()
            fn(i)
            samples.append(clock() - start)
    return samples


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- variants ----------------------------------------------------------------------------------------------


def local_variants(cs: CaseSet, engine: Engine) -> dict[str, Callable[[int], object]]:
    guard = Guard(tools=cs.tools, engine=engine)
    cases = cs.cases
    bare = [replace(c.run, tool_definitions=()) for c in cases]
    tools = cs.tools
    n = len(cases)

    def check(i: int) -> object:
        c = cases[i % n]
        return guard.check(c.history, c.proposed)

    def check_messages(i: int) -> object:
        c = cases[i % n]
        return guard.check(c.messages, c.proposed_message)

    def baseline(i: int) -> object:
        return bare[i % n].prefix(STEPS).with_tools(tools)

    for c in cases[:3]:  # warm the caches (policy packs) before timing
        guard.check(c.history, c.proposed)
    return {
        f"guard · {cs.label}": check,
        f"guard, messages · {cs.label}": check_messages,
        f"baseline · {cs.label}": baseline,
    }


class Remote:
    """A loopback gRPC server hosting the evaluation service (backed by an in-process ``Guard`` with the set's
    tools), and a ``RemoteGuard`` client of it sending OpenAI-style messages and the tools with every request."""

    def __init__(self, cs: CaseSet, engine: Engine) -> None:
        import grpc

        from otel_agent_eval.hook.remote import RemoteGuard
        from otel_agent_eval.hook.service import add_evaluation_service

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_evaluation_service(self.server, Guard(tools=cs.tools, engine=engine))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        # A generous deadline: a timed-out check fails open (fast, and wrong to time); counted and refused below.
        self.guard = RemoteGuard(f"127.0.0.1:{port}", tools=cs.tools, timeout=1.0)
        self.cases = cs.cases
        for i in range(3):  # warm the channel and the service's caches
            self(i)

    def __call__(self, i: int) -> object:
        c = self.cases[i % len(self.cases)]
        return self.guard.check(c.messages, c.proposed_message)

    def close(self) -> None:
        self.guard.close()
        self.server.stop(None)


def remote_variant(cs: CaseSet, engine: Engine) -> tuple[Remote | None, str | None]:
    if importlib.util.find_spec("otel_agent_eval.hook.remote") is None or (
        importlib.util.find_spec("otel_agent_eval.hook.service") is None
    ):
        # TODO: measure once otel_agent_eval.hook.remote.RemoteGuard and
        # otel_agent_eval.hook.service.add_evaluation_service exist (issue 5, item 2).
        return None, "not measured: remote guard not available"
    try:
        return Remote(cs, engine), None
    except Exception as exc:  # an API that differs from what this script expects: say so, measure the rest
        return None, f"not measured: remote guard could not be set up ({type(exc).__name__}: {exc})"


# --- main --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=300, help="checks per variant per round")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 50")
    parser.add_argument("--profile", action="store_true", help="also profile the in-process checks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.n = 3, 50

    sets = [
        load_set("τ² retail", DATA / "tau2" / "retail-gpt-4.1.json", DATA / "tau-bench" / "retail-tools.json"),
        load_set(
            "τ-bench airline",
            DATA / "tau-bench" / "airline-gpt-4o-tasks-00-24.json",
            DATA / "tau-bench" / "airline-tools.json",
        ),
    ]
    engine = Engine(packs=PackLibrary.with_builtins())
    given = list(argv if argv is not None else sys.argv[1:])
    print(f"# Guard latency benchmark: otel-agent-eval {otel_agent_eval.__version__}")
    print(f"\ncommand: {' '.join(['.venv/bin/python', 'bench/guard_latency.py', *given])}")
    print(f"python {sys.version.split()[0]}; {args.rounds} rounds of {args.n} checks per variant; wall clock")
    for cs in sets:
        print(f"- {cs.label}: {len(cs.cases)} histories of {STEPS} steps ({cs.left_out} runs too short, left out)")

    variants: dict[str, Callable[[int], object]] = {}
    for cs in sets:
        variants.update(local_variants(cs, engine))
    remote, why = remote_variant(sets[0], engine)
    if remote is not None:
        variants[f"remote (gRPC loopback) · {sets[0].label}"] = remote

    rng = random.Random(args.seed)
    samples: dict[str, list[int]] = {name: [] for name in variants}
    round_p99: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            order = list(variants)
            rng.shuffle(order)
            for name in order:
                s = time_each(variants[name], args.n)
                samples[name] += s
                round_p99[name].append(quantile(s, 0.99))
    finally:
        if remote is not None:
            remote.close()
    if remote is not None and remote.guard.failures:
        why = f"{remote.guard.failures} checks failed open (deadline 1 s or unreachable): the figures are not valid"

    print("\n## Latency per check (ms)\n")
    print("| variant | checks | p50 | p99 | median of round p99 | mean | max | goal (p99) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    results: dict[str, tuple[float, bool | None]] = {}
    for name, s in samples.items():
        p99 = quantile(s, 0.99) / 1e6
        goal = GOAL_REMOTE_MS if name.startswith("remote") else GOAL_LOCAL_MS if name.startswith("guard") else None
        met = None if goal is None else p99 < goal
        results[name] = (p99, met)
        status = "—" if goal is None else f"< {goal:g} ms: {'met' if met else '**not met**'}"
        print(
            f"| {name} | {len(s)} | {statistics.median(s) / 1e6:.3f} | {p99:.3f} | "
            f"{statistics.median(round_p99[name]) / 1e6:.3f} | {statistics.fmean(s) / 1e6:.3f} | "
            f"{max(s) / 1e6:.3f} | {status} |"
        )
    print()
    for cs in sets:
        g, b = samples[f"guard · {cs.label}"], samples[f"baseline · {cs.label}"]
        print(f"- {cs.label}: guard p50 = {statistics.median(g) / max(1, statistics.median(b)):.0f} × baseline p50")
        m = samples.get(f"guard, messages · {cs.label}")
        if m:
            print(f"  guard on OpenAI messages p50 = {statistics.median(m) / statistics.median(g):.2f} × guard p50")
    if remote is not None:
        r, m = samples[f"remote (gRPC loopback) · {sets[0].label}"], samples[f"guard, messages · {sets[0].label}"]
        print(
            f"- remote (gRPC loopback) · {sets[0].label}: +{(statistics.median(r) - statistics.median(m)) / 1e6:.3f} "
            "ms p50 over the in-process guard on the same messages"
        )
    if why:
        print(f"- remote (gRPC loopback): {why}")

    print("\n## Goals (issue 5, item 3)\n")
    local_met = all(met for name, (_, met) in results.items() if name.startswith("guard"))
    print(f"- in process, p99 < {GOAL_LOCAL_MS:g} ms on every set: {'met' if local_met else 'not met'}")
    if remote is not None and not remote.guard.failures:
        remote_met = all(met for name, (_, met) in results.items() if name.startswith("remote"))
        print(f"- over gRPC on loopback, p99 < {GOAL_REMOTE_MS:g} ms: {'met' if remote_met else 'not met'}")
    else:
        print(f"- over gRPC on loopback, p99 < {GOAL_REMOTE_MS:g} ms: {why}")

    if args.profile:
        print("\n## Profile of the in-process checks (top 25 by own time)\n")
        profiler = cProfile.Profile()
        guard_fns = [fn for name, fn in variants.items() if name.startswith("guard")]
        profiler.enable()
        for fn in guard_fns:
            for i in range(args.n * 3):
                fn(i)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
