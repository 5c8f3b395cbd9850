"""Replay benchmark of the in-loop guard: would it have stopped the failed runs in time, and left the good ones be?

Run from the repository root::

    .venv/bin/python bench/guard_replay.py
    .venv/bin/python bench/guard_replay.py --json out/guard_replay.json --misses 10

Every run file under ``--data`` is read as ``bench/quality.py`` reads it (τ-bench run lists and τ² results, each
with ``tau-bench/<airline|retail>-tools.json``). Each run is fed to an in-process
``Guard(tools=<domain tools>, policy=run.system_instructions)`` step by step: before each assistant step at
position ``k``, ``guard.check(run.prefix(k), run.steps[k])`` says ``allow`` or ``revise``. The guard sees the run
without its benchmark answers and without its application outcome (``reference`` and ``outcome`` removed), so
the figures cannot depend on them; all runs share one ``Engine`` (the built-in detectors, as ``Guard`` builds it).
The replay does not act on a verdict: the recorded run goes on as it happened, so every later step is checked
against the real history.

Ground truth, read only to score:

* a run **failed** when ``run.reference.reward == 0``. Its **root cause** is the first divergence from the
  expected actions: the first assistant step with a successful state-changing call (``policy.is_write``) that
  matches no expected action still unmatched (same name, arguments compared as
  ``otel_agent_eval.evaluate.reference.same_arguments`` does); when every such call matches, the last step of
  the run (an expected write is missing, or the failure is in what the agent said). A failed run is **caught**
  when the guard's first ``revise`` is at or before that step; *caught late* when its first ``revise`` comes after;
* a **successful** run (reward > 0) with any ``revise`` verdict is a **false alarm**. Also counted apart:
  false alarms on a step the environment *accepted* (every tool call of the step went through in the
  recording): a revise of a call the tool itself refused sends back a step that changed nothing, which is
  the guard being early rather than wrong; the goal is judged on all false alarms all the same.

Goals (issue 9, item 8): at least 40% of the failed runs caught at or before the root cause, at most 5% of
the successful runs with a false alarm. Also printed: how many checks were made, wall time per check (mean,
p50, p99 of ``Verdict.seconds``), and which failure modes fired first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import DEFAULT_DATA, DataFile, discover, fmt, table

import otel_agent_eval
from otel_agent_eval.evaluate import Engine, PackLibrary
from otel_agent_eval.evaluate.facts import Call
from otel_agent_eval.evaluate.reference import same_arguments
from otel_agent_eval.hook.guard import Guard
from otel_agent_eval.model import AgentRun, AssistantMessage

GOAL_CAUGHT = 0.40
GOAL_FALSE_ALARMS = 0.05


@dataclass
class Replay:
    label: str
    index: int
    id: str | None
    failed: bool | None
    root_cause: int | None
    root_kind: str
    """``divergence`` (an unexpected write) or ``end`` (every write matched: the last step)."""
    steps: int
    checks: int = 0
    first_revise: int | None = None
    first_modes: tuple[str, ...] = ()
    revises: int = 0
    accepted_revise: int | None = None
    """The first revise of a step whose tool calls all went through in the recording."""
    seconds: list[float] = field(default_factory=list)

    @property
    def fired(self) -> bool:
        return self.first_revise is not None

    @property
    def caught(self) -> bool:
        return self.fired and self.root_cause is not None and self.first_revise <= self.root_cause  # type: ignore[operator]


def root_cause(run: AgentRun, engine: Engine) -> tuple[int | None, str]:
    """The step of the first divergence from the expected writes (see the module docstring)."""
    if not run.steps:
        return None, "end"
    context = engine.context(run)
    policy = context.policy
    reference = run.reference
    remaining = [a for a in (reference.actions if reference else ()) if policy.is_write(a.name)]
    for call in context.facts.writes:
        if not call.succeeded:
            continue
        match = next(
            (a for a in remaining if a.name == call.name and same_arguments(a.arguments, call.call.arguments)),
            None,
        )
        if match is None:
            return call.step, "divergence"
        remaining.remove(match)
    return run.steps[-1].index, "end"


def replay(df: DataFile, engine: Engine) -> list[Replay]:
    out = []
    truth = df.failed()
    for run in df.runs:
        assert run.source is not None
        failed = truth[run.source.index]
        cause, kind = root_cause(run, engine) if failed else (None, "—")
        blind = replace(run, reference=None, outcome=None)
        guard = Guard(tools=df.tools, policy=run.system_instructions, engine=engine)
        r = Replay(df.label, run.source.index, run.source.id, failed, cause, kind, len(run.steps))
        context_calls = engine.context(blind).facts.calls
        for k, step in enumerate(blind.steps):
            if not isinstance(step, AssistantMessage):
                continue
            verdict = guard.check(blind.prefix(k), step)
            r.checks += 1
            r.seconds.append(verdict.seconds)
            if verdict.action == "revise":
                r.revises += 1
                if r.accepted_revise is None and _accepted(context_calls, step):
                    r.accepted_revise = step.index
                if r.first_revise is None:
                    r.first_revise = step.index
                    r.first_modes = tuple(sorted({f"{f.evaluator}/{f.mode}" for f in verdict.findings}))
        out.append(r)
    return out


def _accepted(calls: Sequence[Call], step: AssistantMessage) -> bool:
    """Whether the environment accepted the step: none of its tool calls failed in the recording."""
    return not any(c.failed for c in calls if c.step == step.index)


def summary(replays: Sequence[Replay]) -> dict[str, Any]:
    failed = [r for r in replays if r.failed is True]
    good = [r for r in replays if r.failed is False]
    caught = sum(r.caught for r in failed)
    late = sum(r.fired and not r.caught for r in failed)
    alarms = sum(r.fired for r in good)
    seconds = [s for r in replays for s in r.seconds]
    return {
        "runs": len(replays),
        "failed": len(failed),
        "successful": len(good),
        "caught": caught,
        "caught_share": caught / len(failed) if failed else None,
        "caught_late": late,
        "missed": len(failed) - caught - late,
        "divergence_roots": sum(r.root_kind == "divergence" for r in failed),
        "false_alarms": alarms,
        "false_alarm_share": alarms / len(good) if good else None,
        "false_alarms_accepted": sum(r.accepted_revise is not None for r in good),
        "checks": len(seconds),
        "revise_verdicts": sum(r.revises for r in replays),
        "mean_ms": statistics.fmean(seconds) * 1e3 if seconds else None,
        "p50_ms": statistics.median(seconds) * 1e3 if seconds else None,
        "p99_ms": _quantile(seconds, 0.99) * 1e3 if seconds else None,
    }


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the data directory (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")
    parser.add_argument("--misses", type=int, default=5, help="list this many missed failed runs per kind")
    args = parser.parse_args(argv)

    files = discover(args.data.resolve())
    engine = Engine(packs=PackLibrary.with_builtins())
    given = list(argv if argv is not None else sys.argv[1:])
    print(f"# Guard replay benchmark: otel-agent-eval {otel_agent_eval.__version__}")
    print(f"\ncommand: {' '.join(['.venv/bin/python', 'bench/guard_replay.py', *given])}")
    print(f"data: {args.data}; evaluators: {', '.join(e.name for e in engine.evaluators)}")
    for df in files:
        skipped = f", {len(df.skipped)} unreadable (skipped)" if df.skipped else ""
        print(f"- {df.label}: {len(df.runs)} runs{skipped}, tools {df.tools_path.name} ({len(df.tools)} tools)")

    started = time.perf_counter()
    by_file = {df.label: replay(df, engine) for df in files}
    wall = time.perf_counter() - started
    pooled_replays = [r for rs in by_file.values() for r in rs]
    numbers = {label: summary(rs) for label, rs in by_file.items()}
    pooled = summary(pooled_replays)

    header = ["file", "runs", "failed", "caught ≤ root", "caught late", "missed", "caught share", "successful"]
    header += ["false alarms", "false-alarm share", "on accepted steps", "checks", "ms/check mean", "p50", "p99"]
    rows = []
    for label, m in [*numbers.items(), ("**pooled**", pooled)]:
        rows.append(
            [
                label,
                str(m["runs"]),
                str(m["failed"]),
                str(m["caught"]),
                str(m["caught_late"]),
                str(m["missed"]),
                _pct(m["caught_share"]),
                str(m["successful"]),
                str(m["false_alarms"]),
                _pct(m["false_alarm_share"]),
                str(m["false_alarms_accepted"]),
                str(m["checks"]),
                fmt(m["mean_ms"]),
                fmt(m["p50_ms"]),
                fmt(m["p99_ms"]),
            ]
        )
    print(f"\n## Results\n\n{pooled['checks']} checks in {wall:.1f} s wall (the whole replay)\n")
    print(table(header, rows, "l" + "r" * (len(header) - 1)))
    print(
        f"\nroot causes of the {pooled['failed']} failed runs: {pooled['divergence_roots']} an unexpected write, "
        f"{pooled['failed'] - pooled['divergence_roots']} the last step (a missing write, or what was said)"
    )

    print("\n## Goals (issue 9, item 8)\n")
    goals = [
        ("failed runs caught at or before the root cause", pooled["caught_share"], f"≥ {GOAL_CAUGHT:.0%}", True),
        ("successful runs with a false alarm", pooled["false_alarm_share"], f"≤ {GOAL_FALSE_ALARMS:.0%}", False),
    ]
    goal_rows = []
    all_met = True
    for name, value, goal, at_least in goals:
        met = value is not None and (value >= GOAL_CAUGHT if at_least else value <= GOAL_FALSE_ALARMS)
        all_met &= met
        goal_rows.append([name, _pct(value), goal, "met" if met else "**not met**"])
    print(table(["goal", "pooled", "target", "status"], goal_rows, "lrrl"))
    print(f"\nall goals met: {'yes' if all_met else 'no'}")

    first = Counter(m for r in pooled_replays if r.fired for m in r.first_modes)
    side = {
        m: Counter("failed" if r.failed else "successful" for r in pooled_replays if r.fired and m in r.first_modes)
        for m in first
    }
    print("\n## What fired first (per run: the evaluator/mode of the first revise)\n")
    print(
        table(
            ["evaluator/mode", "failed runs", "successful runs"],
            [[m, str(side[m]["failed"]), str(side[m]["successful"])] for m, _ in first.most_common()],
            "lrr",
        )
    )
    if args.misses:
        missed = [r for r in pooled_replays if r.failed and not r.caught]
        print(f"\n## Failed runs not caught in time ({len(missed)}; first {args.misses} per root kind)\n")
        for kind in ("divergence", "end"):
            for r in [r for r in missed if r.root_kind == kind][: args.misses]:
                when = f"first revise at step {r.first_revise} ({', '.join(r.first_modes)})" if r.fired else "no revise"
                print(f"- {r.label} run {r.index}: root cause ({kind}) at step {r.root_cause} of {r.steps}; {when}")
        alarms = [r for r in pooled_replays if r.failed is False and r.fired]
        print(f"\n## False alarms ({len(alarms)}; first {args.misses})\n")
        for r in alarms[: args.misses]:
            print(f"- {r.label} run {r.index}: revise at step {r.first_revise} ({', '.join(r.first_modes)})")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"version": otel_agent_eval.__version__, "files": numbers, "pooled": pooled, "all_goals_met": all_met}
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nnumbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
