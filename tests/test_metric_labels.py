"""The metrics' ``agent`` label: bounded and never personal data, through a running processor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from helpers import send_greetings
from test_processor import config, wait_for

from otel_agent_eval.processor import Processor
from otel_agent_eval.processor.agent_labels import AgentLabels


def agent_values(processor: Processor) -> set[str]:
    return {
        sample.labels["agent"]
        for metric in processor.registry.collect()
        for sample in metric.samples
        if sample.name == "agent_eval_traces_total"
    }


def test_agent_names_that_look_personal_never_reach_a_label(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path, max_agent_labels=5))
    names = [
        "ann@example.com",
        "user-48213",
        "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e",
        "shop",
        *(f"bot {c}" for c in "abcdefgh"),
    ]
    send_greetings(processor.grpc.endpoint, names)  # type: ignore[union-attr]
    wait_for(lambda: len(processor.store.recent_traces(limit=100)) == len(names))
    values = agent_values(processor)
    kept = values - {"redacted", "other"}
    # Which five names are kept depends on the order evaluations finish in; that five are, and no more, does not.
    assert {"redacted", "other"} <= values and len(kept) == 5 and kept <= set(names[3:])
    text = "\n".join(str(s) for m in processor.registry.collect() for s in m.samples)
    assert "ann@example.com" not in text and "48213" not in text and "3f2b1c9e" not in text


def test_an_allow_list_keeps_only_the_agents_it_names(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path, agent_labels=("shop",)))
    send_greetings(processor.grpc.endpoint, ["shop", "travel", "billing"])  # type: ignore[union-attr]
    wait_for(lambda: len(processor.store.recent_traces()) == 3)
    assert agent_values(processor) == {"shop", "other"}


def test_the_guard_is_bounded_whatever_the_names() -> None:
    labels = AgentLabels(max_agents=3)
    values = {labels.of(f"agent {i}") for i in range(300)}
    assert values == {"agent 0", "agent 1", "agent 2", "other"}
    assert labels.of("x" * 65) == "redacted" and labels.of("naïve") == "redacted" and labels.of("") == "unknown"
