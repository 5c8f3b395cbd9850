"""Findings with a focus (an early look at the steps new since the last one, an in-loop check of one step) are
exactly the findings a look at the whole run makes at those steps, on every recorded run and prefix."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import DATA

from otel_agent_eval.evaluate import Engine, PackLibrary
from otel_agent_eval.ingest.recorded import load_runs, load_tools
from otel_agent_eval.model import AgentRun

FILES = [
    ("tau-bench/airline-gpt-4o-tasks-00-24.json", "tau-bench/airline-tools.json"),
    *[(f"tau2/{p.name}", "tau-bench/retail-tools.json") for p in sorted((DATA / "tau2").glob("*retail*.json"))][:1],
]


def _runs() -> list[AgentRun]:
    runs: list[AgentRun] = []
    for name, tools in FILES:
        loaded = load_runs(DATA / name, tools=load_tools(DATA / tools))
        runs.extend(replace(r, reference=None) for r in loaded if isinstance(r, AgentRun))
    return runs


def _keys(findings: list) -> list[tuple]:  # type: ignore[type-arg]
    return sorted((f.evaluator, f.mode, f.step, f.outcome, f.confidence, f.critique, f.evidence) for f in findings)


@pytest.mark.parametrize("pack", ["auto", "generic"])
def test_a_look_at_new_steps_finds_what_a_whole_look_finds_there(pack: str) -> None:
    engine = Engine(packs=PackLibrary.with_builtins(force=pack))
    runs = _runs()
    assert len(runs) >= 40
    compared = 0
    for run in runs:
        judged = -1
        for end in [*range(3, len(run.steps), 4), len(run.steps)]:  # looks every 4 steps, as a trace grows
            prefix = replace(run, steps=run.steps[:end])
            new = frozenset(s.index for s in prefix.steps if s.index > judged)
            judged = max(s.index for s in prefix.steps)
            whole = [f for f in engine.findings(prefix, complete=False) if f.step in new]
            assert _keys(engine.findings(prefix, complete=False, focus=new)) == _keys(whole), (run.source, end)
            compared += len(whole)
    assert compared > 0  # the looks found something to compare


def test_one_step_in_focus_is_the_guard_check() -> None:
    engine = Engine()
    for run in _runs()[:10]:
        for step in run.steps[1:]:
            history = replace(run, steps=tuple(s for s in run.steps if s.index < step.index))
            checked = engine.check(history, step)
            whole = engine.findings(replace(run, steps=(*history.steps, step)), complete=False)
            assert _keys(checked) == _keys([f for f in whole if f.step == step.index])
