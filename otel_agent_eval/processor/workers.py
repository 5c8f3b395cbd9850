"""Evaluation workers whose time limit counts from when an evaluation starts, and whose hang costs one trace.

A :class:`concurrent.futures.ThreadPoolExecutor` gives neither: a wait on a future counts from when the wait
starts, not the evaluation, so traces queued behind a hung evaluation time out without having run; and a hung
evaluation keeps its thread, so two hung evaluations stop a two-worker pool for good. Here a :class:`Task`
records when a worker took it up; the pipeline gives up on a task whose evaluation has run past the limit
(:meth:`EvaluationPool.abandon`), and the pool starts a worker in place of the one still stuck in it, so the
traces behind it are evaluated as if nothing had happened. A Python thread cannot be stopped: the stuck one
is left to finish (its result is dropped), then takes work again if the pool is short of workers, or ends;
the workers are daemon threads, so a thread stuck for good does not keep the process from exiting. While
more than ``max_stuck`` threads are stuck at once, no more are started in their place (the pool says so),
rather than grow without bound on an evaluator that hangs every time: the pipeline then hands traces that
find no live worker on unevaluated.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..evaluate import Engine, PackLibrary
from .settings import Component, setting

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class EvaluationConfig(Component):
    """What evaluates (policy packs, calibration) and how: workers, the time limit, early looks at open traces."""

    section = "evaluation"
    evaluate: bool = setting(
        True, "--no-evaluate: forward traces unchanged (a durable relay; the throughput benchmark's baseline)."
    )
    workers: int = setting(2, "Evaluation threads (with --processes 0; they share one core).", minimum=1)
    processes: int = setting(
        0,
        "Evaluation worker processes, one core each (0: evaluate on --workers threads inside serve). The spans "
        "stay in serve; a worker hung past --evaluation-timeout, or dead, is killed and replaced.",
        minimum=0,
    )
    evaluation_timeout: float = setting(
        5.0, "Seconds an evaluation may take; after it the trace goes on unlabelled, marked.", minimum=0, min_open=True
    )
    early_evaluation_interval: float = setting(
        5.0,
        "Seconds between evaluations of a trace that is still open (a long conversation): its failures are "
        "counted in agent_eval_early_failures_total as they happen (0 turns it off).",
        minimum=0,
    )
    policy_packs: tuple[Path, ...] = setting(
        (), "A policy pack (YAML) besides the built-in ones; repeatable.", flag="policy-pack"
    )
    pack: str = setting(
        "auto",
        "The policy pack for every run, by name ('auto': chosen per run from its policy text; 'generic': "
        "as for a domain no pack knows).",
    )
    calibration: Path | None = setting(
        Path("builtin"),
        "A calibration file (`otel-agent-eval calibrate`) for failure_score (and, fitted with --confidences "
        "measured, the findings' confidences); 'builtin': the one shipped; 'none': the detectors' own, noisy-or.",
    )


def engine_for(config: EvaluationConfig) -> Engine:
    """The engine these settings describe: the built-in detectors, the policy packs and the calibration."""
    from ..evaluate.calibration import load_calibration

    calibration = load_calibration(config.calibration) if config.calibration is not None else None
    packs = PackLibrary.with_builtins(config.policy_packs, force=config.pack)
    return Engine(packs=packs, calibration=calibration)


class Task(Generic[T]):
    """One piece of work: when a worker started it, and its result or exception once done."""

    def __init__(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        finished: threading.Condition,
        notify: queue.SimpleQueue[Task[Any]] | None = None,
    ) -> None:
        self._fn = fn
        self._args = args
        self._finished = finished
        self._notify = notify
        self.started: float | None = None
        """``time.monotonic()`` when a worker took it up; ``None`` while it waits in the queue."""
        self.abandoned = False
        self.cancelled = False
        self._done = False
        self._result: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the task to finish; whether it did."""
        with self._finished:
            return self._finished.wait_for(lambda: self._done, timeout)

    def result(self) -> T:
        """The result (or the exception raised) of a task that is done."""
        if not self._done:
            raise RuntimeError("the task is not done")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def cancel(self) -> None:
        """A task given up on before any worker took it: no worker will run it."""
        self.cancelled = True

    def running_for(self, now: float) -> float:
        """Seconds since a worker took it up (0 while it waits)."""
        return 0.0 if self.started is None else now - self.started

    def _run(self) -> None:
        self.started = time.monotonic()
        try:
            self._result = self._fn(*self._args)
        except BaseException as exc:  # handed to whoever asks for the result
            self._error = exc
        with self._finished:
            self._done = True
            self._finished.notify_all()
        if self._notify is not None:
            self._notify.put(self)


class EvaluationPool:
    """``workers`` daemon threads taking tasks in order (see the module's documentation).

    ``live`` counts the threads free to take work (not stuck in an abandoned task): it is kept at ``workers``
    by starting a thread in place of each stuck one, as long as fewer than ``max_stuck`` are stuck at once.
    A stuck thread that comes back takes work again if the pool is short of live workers, and ends if not.
    """

    def __init__(self, workers: int, *, name: str = "agent-eval-evaluate", max_stuck: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.name = name
        self.max_stuck = 4 * workers if max_stuck is None else max_stuck
        self.stuck = 0
        """Threads stuck right now in a task given up on."""
        self.live = 0
        """Threads free to take work."""
        self.finished = threading.Condition()
        """Notified whenever a task finishes: what a waiter on several tasks waits on."""
        self._queue: queue.SimpleQueue[Task[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        with self._lock:
            for _ in range(workers):
                self._spawn()

    def _spawn(self) -> None:  # with the lock held
        self._count += 1
        self.live += 1
        threading.Thread(target=self._work, name=f"{self.name}-{self._count}", daemon=True).start()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                with self._lock:
                    self.live -= 1
                return
            if task.cancelled:
                continue
            task._run()
            if task.abandoned:
                with self._lock:
                    self.stuck -= 1
                    if self._closed or self.live >= self.workers:
                        return  # another worker took this one's place while it was stuck
                    self.live += 1  # the pool was short of workers: this one takes work again

    def submit(self, fn: Callable[..., T], *args: Any, notify: queue.SimpleQueue[Task[Any]] | None = None) -> Task[T]:
        """Queue ``fn(*args)``; with ``notify``, the task is put on that queue when it finishes."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        task: Task[T] = Task(fn, args, self.finished, notify)
        self._queue.put(task)
        return task

    def abandon(self, task: Task[Any]) -> None:
        """Give up on a task that is running past its limit: a new worker takes the stuck one's place."""
        with self._lock:
            if task.abandoned or task.done() or task.started is None:
                return
            task.abandoned = True
            self.stuck += 1
            self.live -= 1
            if self._closed:
                return
            if self.stuck > self.max_stuck:
                logger.error(
                    "%d evaluations are stuck past their time limit at once: not starting more workers in their "
                    "place (an evaluator hangs; traces waiting for a worker go on unevaluated)",
                    self.stuck,
                )
                return
            self._spawn()

    def shutdown(self) -> None:
        """No new tasks; each idle worker ends (a running one ends after its task)."""
        with self._lock:
            self._closed = True
            count = self._count
        for _ in range(count):
            self._queue.put(None)
