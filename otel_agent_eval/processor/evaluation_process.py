"""Evaluation in worker processes: ``--processes N`` evaluates on N cores instead of one.

Threads share one interpreter lock, so ``--workers`` threads evaluate one trace at a time however many cores
there are. With ``--processes N``, each of N worker processes has its own engine, built from the same
evaluation settings (packs, calibration). The spans stay in ``serve``'s process, where they are labelled and
handed on; a worker gets the trace's spans once, serialized as an OTLP request (bytes: nothing is pickled but
the answer), reads them into runs and evaluates them, and sends back the evaluations with their runs' steps
left out (the labels need the findings, the outcome, the score and the run's ids, agent and source).

A worker that runs past the time limit is killed and a new one started in its place, so a hung evaluation
costs its own trace and no worker; one that dies (a crash, the OOM killer) is replaced the same way. Either
way the trace goes on unevaluated and marked, as with threads. Workers are started with ``spawn``: forking a
process that runs gRPC's threads is unsafe.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..evaluate.findings import Evaluation
from ..ingest.span_record import records_from_request
from ..ingest.spans import runs_from_records
from .assembly import SpanEntry, encode_request
from .workers import EvaluationConfig, engine_for

logger = logging.getLogger(__name__)

_START_TIMEOUT = 120.0  # seconds for a worker to import the package and build its engine


class WorkerGone(Exception):
    """The worker process died, or was killed after running past the time limit."""


def _compact(evaluation: Evaluation) -> Evaluation:
    """The evaluation as the parent needs it: the run without its steps (the findings name steps and spans)."""
    return dataclasses.replace(evaluation, run=dataclasses.replace(evaluation.run, steps=()))


def _exit_with_parent(parent: int) -> None:
    """A worker never outlives serve, even in the middle of an evaluation that hangs (``kill -9`` of serve
    leaves no pipe end to read EOF from while the worker is busy)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _worker_main(conn: Connection, config: EvaluationConfig, parent: int) -> None:
    """A worker's life: build the engine, then evaluate requests until told to stop (``None``) or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: serve stops its workers itself
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s (worker): %(message)s")
    engine = engine_for(config)
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # serve is gone
            return
        if job is None:
            return
        payload, complete = job
        try:
            request = ExportTraceServiceRequest.FromString(payload)
            runs = runs_from_records(list(records_from_request(request, lean=True)))
            answer = pickle.dumps(("ok", [_compact(engine.evaluate(run, complete=complete)) for run in runs]))
        except Exception as exc:  # the type only: an exception's message can quote what the agent said
            answer = pickle.dumps(("error", type(exc).__name__))  # (a finding that cannot be pickled too)
        conn.send_bytes(answer)


class _Worker:
    def __init__(self, context: Any, config: EvaluationConfig, number: int) -> None:
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_worker_main, args=(child, config, os.getpid()), name=f"agent-eval-evaluator-{number}", daemon=True
        )
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.kill()
            raise WorkerGone(f"evaluation worker did not start within {timeout:.0f}s")
        try:
            self.conn.recv()
        except (EOFError, OSError):
            raise WorkerGone("evaluation worker died while starting (see its log above)") from None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class ProcessEvaluators:
    """``count`` worker processes; :meth:`evaluate` runs on the caller's thread and uses an idle one."""

    def __init__(self, config: EvaluationConfig, count: int) -> None:
        if count < 1:
            raise ValueError(f"processes must be at least 1, not {count}")
        self.config = config
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self.replaced = 0
        """Workers killed (past the time limit) or found dead, and started again."""
        self.missing = 0
        """Workers that could not be started again yet."""
        self._closed = False
        workers = [self._start() for _ in range(count)]
        try:
            for worker in workers:  # started side by side, waited for together
                worker.wait_ready(_START_TIMEOUT)
        except WorkerGone:
            for worker in workers:
                worker.kill()
            raise
        for worker in workers:
            self._idle.put(worker)

    def _start(self) -> _Worker:
        with self._lock:
            self._started += 1
            number = self._started
        return _Worker(self._context, self.config, number)

    def evaluate(self, entries: Iterable[SpanEntry], *, complete: bool, timeout: float) -> list[Evaluation]:
        """The trace's runs, evaluated in a worker process (raises :class:`WorkerGone` when the worker hung past
        ``timeout`` seconds or died; it is replaced)."""
        payload = encode_request(entries)
        self._restore()
        try:  # bounded: a worker that could not be replaced must not leave the trace waiting for good
            worker = self._idle.get(timeout=_START_TIMEOUT)
        except queue.Empty:
            raise WorkerGone("no evaluation worker is free (one could not be started again)") from None
        try:
            worker.conn.send((payload, complete))
            deadline = time.monotonic() + timeout
            while not worker.conn.poll(min(0.5, max(deadline - time.monotonic(), 0.0))):
                if not worker.process.is_alive():
                    raise WorkerGone("the evaluation worker died")
                if time.monotonic() >= deadline:
                    raise WorkerGone(f"evaluation took longer than {timeout}s; the worker was killed")
            kind, value = pickle.loads(worker.conn.recv_bytes())
        except BaseException as exc:  # gone, killed, or an answer that cannot be read: never a worker lost
            self._replace(worker)
            if isinstance(exc, WorkerGone):
                raise
            raise WorkerGone(f"the evaluation worker failed ({type(exc).__name__})") from None
        self._release(worker)
        if kind == "error":
            raise RuntimeError(f"evaluation failed in a worker process: {value}")
        evaluations: list[Evaluation] = value
        return evaluations

    def _release(self, worker: _Worker) -> None:
        if self._closed:  # shut down while it was busy: it stops now
            self._stop(worker, 5.0)
        else:
            self._idle.put(worker)

    @staticmethod
    def _stop(worker: _Worker, timeout: float) -> None:
        try:
            worker.conn.send(None)
            worker.process.join(timeout)
        except (OSError, BrokenPipeError):
            pass
        worker.kill()

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self.replaced += 1
        with self._lock:
            self.missing += 1
        if not self._closed:
            logger.warning("an evaluation worker hung or died; starting another in its place")
            self._restore()

    def _restore(self) -> None:
        """Start the workers missing (one that could not be started is tried again at the next evaluation)."""
        while not self._closed:
            with self._lock:
                if self.missing <= 0:
                    return
                self.missing -= 1
            try:
                fresh = self._start()
                fresh.wait_ready(_START_TIMEOUT)
            except (WorkerGone, OSError):
                with self._lock:
                    self.missing += 1
                logger.exception("an evaluation worker could not be started; trying again at the next trace")
                return
            self._idle.put(fresh)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the idle workers (a busy one is killed when its evaluation ends or times out)."""
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            self._stop(worker, timeout)
