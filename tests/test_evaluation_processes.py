"""``--processes N``: evaluation in worker processes gives the labels threads give, and a worker that hangs
or dies costs its own trace only: it is killed (or found dead) and replaced, and the traces after it are
evaluated."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OtlpReceiver
from test_processor import config, metric_total, received_records, send_runs, wait_for

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.processor import Processor

LABELS = ("agent_eval.failure.mode", "agent_eval.failure.outcome", "agent_eval.failure.critique")


def _labels(records: list[Any]) -> list[tuple[Any, ...]]:
    """What the processor wrote, span by span, in an order that does not depend on the trace ids."""
    out = []
    for r in records:
        values = tuple(r.attributes.get(k) for k in (*LABELS, "agent_eval.trace.outcome", "agent_eval.agent.name"))
        out.append((r.name, *values))
    return sorted(out, key=repr)


def _run(tmp_path: Path, running: Callable[..., Processor], **settings: Any) -> tuple[Processor, list[Any]]:
    with OtlpReceiver() as downstream:
        processor = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}", **settings))
        sent = send_runs(processor.grpc.endpoint, runs=4)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == sent, timeout=60)
        return processor, received_records(downstream)


def _workers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("agent-eval-evaluator")]


def test_processes_label_as_threads_do(tmp_path: Path, running: Callable[..., Processor]) -> None:
    _, by_threads = _run(tmp_path / "threads", running)
    processor, by_processes = _run(tmp_path / "processes", running, processes=2)
    assert len(_workers()) == 2
    assert _labels(by_processes) == _labels(by_threads)
    assert sum(r.attributes.get("agent_eval.failure.mode") == "wrong_arguments" for r in by_processes) == 4
    assert metric_total(processor, "agent_eval_traces_total") == 4  # counted in serve, from the workers' answers
    processor.stop()
    wait_for(lambda: not _workers(), timeout=30)  # stopped with serve, none left behind


@pytest.mark.parametrize("fault", ["hang", "die"])
def test_a_worker_that_hangs_or_dies_costs_its_trace_only(
    tmp_path: Path, running: Callable[..., Processor], fault: str
) -> None:
    with OtlpReceiver() as downstream:
        processor = running(
            config(tmp_path, downstream=f"grpc://{downstream.endpoint}", processes=1, evaluation_timeout=2.0)
        )
        [worker] = _workers()
        assert worker.pid is not None
        # A stopped process never answers (a hang); a killed one is found dead.
        os.kill(worker.pid, signal.SIGSTOP if fault == "hang" else signal.SIGKILL)
        first = send_runs(processor.grpc.endpoint, runs=1)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == first, timeout=60)
        records = received_records(downstream)
        assert all(r.attributes.get("agent_eval.evaluation.error") for r in records)  # on, unevaluated, marked
        wait_for(lambda: len(_workers()) == 1 and _workers()[0].pid != worker.pid, timeout=120)  # replaced
        assert not worker.is_alive()
        more = send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == first + more, timeout=60)
        later = received_records(downstream)[len(records) :]
    assert sum(r.attributes.get("agent_eval.failure.mode") == "wrong_arguments" for r in later) == 2
    assert not any(r.attributes.get("agent_eval.evaluation.error") for r in later)
    assert metric_total(processor, "agent_eval_evaluation_errors_total") == 1


def test_an_engine_given_in_code_cannot_go_to_processes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="processes must be 0"):
        Processor(config(tmp_path, processes=2), Engine())
