"""Evaluation workers whose time limit counts from when an evaluation starts, and whose hang costs one trace.

A :class:`concurrent.futures.ThreadPoolExecutor` gives neither: a wait on a future counts from when the wait
starts, not the evaluation, so traces queued behind a hung evaluation time out without having run; and a hung
evaluation keeps its thread, so two hung evaluations stop a two-worker pool for good. Here a :class:`Task`
records when a worker took it up; the pipeline gives up on a task whose evaluation has run past the limit
(:meth:`EvaluationPool.abandon`), and the pool starts a worker in place of the one still stuck in it, so the
traces behind it are evaluated as if nothing had happened. A Python thread cannot be stopped: the stuck one
is left to finish (its result is dropped) and then ends; the workers are daemon threads, so a thread stuck
for good does not keep the process from exiting. At most ``max_stuck`` stuck threads are replaced; past
that the pool shrinks (and says so), rather than grow without bound on an evaluator that hangs every time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Task(Generic[T]):
    """One piece of work: when a worker started it, and its result or exception once done."""

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], finished: threading.Condition) -> None:
        self._fn = fn
        self._args = args
        self._finished = finished
        self.started: float | None = None
        """``time.monotonic()`` when a worker took it up; ``None`` while it waits in the queue."""
        self.abandoned = False
        self._done = False
        self._result: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def result(self) -> T:
        """The result (or the exception raised) of a task that is done."""
        if not self._done:
            raise RuntimeError("the task is not done")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

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


class EvaluationPool:
    """``workers`` daemon threads taking tasks in order (see the module's documentation)."""

    def __init__(self, workers: int, *, name: str = "agent-eval-evaluate", max_stuck: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.name = name
        self.max_stuck = 4 * workers if max_stuck is None else max_stuck
        self.stuck = 0
        """Workers given up on (their task ran past its limit) and replaced."""
        self.finished = threading.Condition()
        """Notified whenever a task finishes: what a waiter on several tasks waits on."""
        self._queue: queue.SimpleQueue[Task[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        for _ in range(workers):
            self._spawn()

    def _spawn(self) -> None:
        self._count += 1
        threading.Thread(target=self._work, name=f"{self.name}-{self._count}", daemon=True).start()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            task._run()
            if task.abandoned:
                return  # another worker has taken this one's place while it was stuck

    def submit(self, fn: Callable[..., T], *args: Any) -> Task[T]:
        if self._closed:
            raise RuntimeError("the pool is shut down")
        task: Task[T] = Task(fn, args, self.finished)
        self._queue.put(task)
        return task

    def abandon(self, task: Task[Any]) -> None:
        """Give up on a task that is running past its limit: a new worker takes the stuck one's place."""
        with self._lock:
            if task.abandoned or task.done() or task.started is None:
                return
            task.abandoned = True
            if self.stuck >= self.max_stuck:
                logger.error(
                    "%d evaluations are stuck past their time limit: not replacing their workers any more "
                    "(an evaluator hangs; fewer traces get evaluated until it returns)",
                    self.stuck,
                )
                return
            self.stuck += 1
            if not self._closed:
                self._spawn()

    def shutdown(self) -> None:
        """No new tasks; each idle worker ends (a running one ends after its task)."""
        self._closed = True
        for _ in range(self._count):
            self._queue.put(None)
