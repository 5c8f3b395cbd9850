"""Receive -> assemble -> evaluate -> label -> hand on: the processor's pipeline, without its network parts.

Receiving never waits on evaluation: :meth:`Pipeline.receive` writes the request to the on-disk inbox and
buffers its spans; a worker thread releases complete traces, evaluates them (with a time limit), labels the
spans and hands them on (to the outbox for the downstream, or to the embedded trace store).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .. import semconv as sc
from ..evaluate import Engine
from ..evaluate.findings import Evaluation
from ..evaluate.judge import Cascade, JudgeEvent
from .assembly import PendingTrace, ResourceSpansBatch, SpanEntry, TraceAssembler, encode_request
from .evaluation_process import ProcessEvaluators
from .export import Handoff
from .judging import follow_up_request, judged_findings
from .labelling import label_spans, mark_unevaluated
from .metrics import ProcessorMetrics
from .settings import Component, setting
from .store import Store
from .trace_reading import TraceReading
from .validation import validate_request
from .workers import EvaluationConfig, EvaluationPool, Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueConfig(Component):
    """The persistent queue: where the on-disk inbox and outbox live, and how many spans may wait in memory."""

    section = "queue"
    data_dir: Path = setting(Path(".agent-eval"), "Where the on-disk inbox, outbox and embedded trace store live.")
    max_spans_in_flight: int = setting(
        200_000,
        "Spans waiting for evaluation at most; beyond, requests are refused, retryable (gRPC UNAVAILABLE, "
        "HTTP 503): memory stays bounded under overload and nothing is dropped.",
        minimum=1,
    )
    fsync: bool = setting(
        False,
        "Sync the inbox to disk at every commit (SQLite synchronous=FULL): an acknowledged request survives a "
        "power loss or an OS crash, not only a crash of serve. Receivers' requests are group-committed, so one "
        "sync serves every request that arrived during the one before.",
    )
    max_stored_traces: int = setting(
        100_000,
        "Evaluated traces kept in the embedded store for `traces`, `show` and `report --store` (their results; "
        "their spans too when there is no downstream); beyond, the oldest go first.",
        minimum=1,
    )


class Backpressure(Exception):
    """Too many spans wait for evaluation: the request is refused, retryable (OTLP clients retry with backoff)."""


class EvaluationTimeout(Exception):
    """Evaluating a trace took longer than allowed: it goes on unlabelled."""


class Pipeline:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        assembler: TraceAssembler,
        metrics: ProcessorMetrics,
        *,
        downstream: bool,
        evaluation_timeout: float = 5.0,
        workers: int = 2,
        tick: float = 0.05,
        evaluate: bool = True,
        notify: Callable[[], None] = lambda: None,
        offer: Callable[[Handoff], bool] | None = None,
        max_spans_in_flight: int = 200_000,
        early_interval: float = 0.0,
        processes: int = 0,
        evaluation_config: EvaluationConfig | None = None,
        cascade: Cascade | None = None,
        judge_concurrency: int = 4,
    ) -> None:
        self.store = store
        self.engine = engine
        self.assembler = assembler
        self.metrics = metrics
        self.downstream = downstream
        self.evaluation_timeout = evaluation_timeout
        self.tick = tick
        self.evaluate = evaluate  # off: a durable pass-through (the baseline of the throughput benchmark)
        self.notify = notify  # called when a trace is queued for the downstream (wakes the exporter)
        # Hands a labelled trace to the exporter in memory (False: it goes to the outbox): a trace the downstream
        # takes at once is written to disk once, on receipt, not a second time labelled.
        self.offer = offer
        self.max_spans_in_flight = max_spans_in_flight
        # Seconds between looks at a trace that is still open (0: none). Long conversations get their failures
        # counted as they happen, not when the conversation ends.
        self.early_interval = early_interval
        # With worker processes, each pool thread drives one of them (and waits on it, off the GIL); without,
        # the threads evaluate here.
        self.processes = processes
        self._evaluation_config = evaluation_config or EvaluationConfig()
        self._evaluators: ProcessEvaluators | None = None
        self._pool = EvaluationPool(processes or workers)
        self._retry: list[PendingTrace] = []  # traces that could not be handed on (a store error): next tick
        # The judge, after the detectors: its calls wait on a remote model (seconds), so they run on threads of
        # their own, and the trace is handed on with the detectors' labels before the judge answers.
        self.cascade = cascade if cascade is not None and cascade.judge is not None else None
        self._judge_pool = EvaluationPool(judge_concurrency, name="agent-eval-judge") if self.cascade else None
        self._judging: list[Task[None]] = []
        # On stop, judgements still running get this long (not the judge's whole time limit: a grace period
        # of 30 s must leave time for the exporter's drain after it).
        judge = self.cascade.judge if self.cascade is not None else None
        self.judge_drain_seconds = min(judge.run_timeout or 10.0, 10.0) if judge is not None else 0.0
        self._judging_stopped = False
        self.max_judging = 4 * judge_concurrency
        """Traces waiting for the judge at most; beyond, a trace is not judged (counted as a budget refusal):
        a slow endpoint must not make the queue, and the evaluations it holds, grow without end."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the receive path -------------------------------------------------------------------------------------

    def receive(self, request: ExportTraceServiceRequest, payload: bytes | None = None) -> int:
        """Take a request: kept on disk first (so it survives a crash), then buffered. Returns its span count.
        Raises :class:`InvalidRequest` for malformed ids (nothing kept), :class:`Backpressure` under overload."""
        validate_request(request)  # a span no downstream would take is never acknowledged
        batch = ResourceSpansBatch.of(request.resource_spans)
        if not batch.entries:
            return 0
        if self.assembler.spans_in_flight() + len(batch.entries) > self.max_spans_in_flight:
            # Memory stays bounded under overload: refuse (retryable) rather than buffer without end.
            self.metrics.refused.add(len(batch.entries))
            raise Backpressure(f"{self.max_spans_in_flight} spans are waiting for evaluation; retry later")
        batch.inbox_id = self.store.inbox_add(payload or request.SerializeToString(), batch.trace_ids())
        self.assembler.add(batch)
        self.metrics.spans_received.add(len(batch.entries))
        return len(batch.entries)

    def recover(self) -> int:
        """After a restart: buffer again what was received and not handed on. Returns the spans recovered."""
        count = 0
        for inbox_id, payload, open_traces in self.store.inbox_pending():
            request = ExportTraceServiceRequest.FromString(payload)
            batch = ResourceSpansBatch.of(request.resource_spans, inbox_id)
            batch.entries = [e for e in batch.entries if bytes(e.span.trace_id) in open_traces]
            self.assembler.add(batch)
            count += len(batch.entries)
        if count:
            logger.info("recovered %d spans received before a restart", count)
        return count

    # --- the evaluation side ----------------------------------------------------------------------------------

    @property
    def thread(self) -> threading.Thread | None:
        """The background thread, once started."""
        return self._thread

    def start(self) -> None:
        if self.processes and self.evaluate:
            self._evaluators = ProcessEvaluators(self._evaluation_config, self.processes)
        self._thread = threading.Thread(target=self._run, name="agent-eval-pipeline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        early: list[tuple[PendingTrace, Task[list[Evaluation]]]] = []
        while not self._stop.is_set():
            try:
                early = self._tick(early)
            except Exception:  # the pipeline must outlive any one failure: what was not handed on is retried
                logger.exception("pipeline tick failed; going on")
                self._stop.wait(min(1.0, max(self.tick, 0.1)))
            self._stop.wait(self.tick)

    def _tick(
        self, early: list[tuple[PendingTrace, Task[list[Evaluation]]]]
    ) -> list[tuple[PendingTrace, Task[list[Evaluation]]]]:
        retry, self._retry = self._retry, []
        ready = retry + self.assembler.ready()
        self.process_all(ready)
        if self.early_interval > 0:
            early = self._collect_early(early)
            # Early looks only on a tick with no trace to finish: under load they would take the capacity
            # that complete traces need.
            due = self.assembler.open_for_early_evaluation(self.early_interval) if not ready else []
            for pending, spans in due:
                early.append((pending, self._pool.submit(self._evaluate_open, pending, spans)))
        return early

    def _collect_early(
        self, early: list[tuple[PendingTrace, Task[list[Evaluation]]]]
    ) -> list[tuple[PendingTrace, Task[list[Evaluation]]]]:
        """Report the failures found in open traces (each once), as they are found; keep the unfinished (an
        early look stuck past the time limit is given up on: the final evaluation still happens)."""
        waiting = []
        now = time.monotonic()
        for pending, future in early:
            if not future.done():
                if future.running_for(now) > self.evaluation_timeout:
                    self._pool.abandon(future)
                else:
                    waiting.append((pending, future))
                continue
            try:
                evaluations = future.result()
            except Exception:  # an early look that fails costs nothing: the final evaluation still happens
                continue
            for evaluation in evaluations:
                agent = self.metrics.agent(evaluation.run.agent_name)
                for finding in evaluation.failures:
                    key = (finding.evaluator, finding.mode, finding.step)
                    if finding.counts and key not in pending.early_findings:
                        pending.early_findings.add(key)
                        self.metrics.early_failures.add(
                            1, {"mode": finding.mode, "category": finding.category, "agent": agent}
                        )
        return waiting

    def stop(self) -> None:
        """Evaluate and hand on everything still buffered, then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        retry, self._retry = self._retry, []
        self.process_all(retry + self.assembler.ready() + self.assembler.drain())
        self._pool.shutdown()
        if self._judge_pool is not None:
            # Judgements in flight get a bounded time to finish; past it those not started are cancelled and
            # those running write nothing more (the traces went on with the detectors' labels already).
            deadline = time.monotonic() + self.judge_drain_seconds
            for task in self._judging:
                task.wait(max(0.0, deadline - time.monotonic()))
            self._judging_stopped = True
            for task in self._judging:
                if task.started is None:
                    task.cancel()
            self._judge_pool.shutdown()
        if self._evaluators is not None:
            self._evaluators.shutdown()

    def process_all(self, pendings: list[PendingTrace]) -> None:
        """Evaluate the traces side by side (``workers`` at a time) and hand each on as its evaluation ends:
        labelled when it finished, unlabelled and marked when it raised or ran past ``evaluation_timeout``
        (counted from when it started, not from when anyone began to wait). A hung evaluation costs its own
        trace only: its worker is replaced and the traces behind it go on being evaluated; if no worker is
        left (too many stuck at once), the traces still waiting go on unevaluated rather than wait for good."""
        again = [p for p in pendings if p.labelled is not None]  # handed on before, a store error: as labelled
        for pending in again:
            self._hand_on_safely(pending, pending.labelled or [])
        pendings = [p for p in pendings if p.labelled is None]
        if not self.evaluate:
            for pending in pendings:
                self._hand_on_safely(pending, [])
            return
        finished: queue.SimpleQueue[Task[list[Evaluation]]] = queue.SimpleQueue()
        waiting: dict[int, tuple[PendingTrace, Task[list[Evaluation]]]] = {}
        for pending in pendings:
            task = self._pool.submit(self._evaluate, pending, notify=finished)
            waiting[id(task)] = (pending, task)
        tick = min(0.05, max(self.evaluation_timeout / 10, 0.001))
        checked = time.monotonic()
        while waiting:
            done: Task[list[Evaluation]] | None
            try:
                done = finished.get(timeout=tick)
            except queue.Empty:
                done = None
            if done is not None and (entry := waiting.pop(id(done), None)) is not None:
                task = done
                outcome: list[Evaluation] | BaseException
                try:
                    outcome = task.result()
                except Exception as exc:  # raised by the evaluation: forwarded unlabelled, marked
                    outcome = exc
                self._hand_on_safely(entry[0], outcome)
            if time.monotonic() - checked >= tick:  # a look at the running ones once a tick, not per finish
                self._give_up_on_overdue(waiting)
                checked = time.monotonic()

    def _give_up_on_overdue(self, waiting: dict[int, tuple[PendingTrace, Task[list[Evaluation]]]]) -> None:
        """Hand on, unlabelled, the traces whose evaluation ran past its time, or that no worker is left for."""
        now = time.monotonic()
        no_worker = self._pool.live <= 0
        for key, (pending, task) in list(waiting.items()):
            if task.done():
                continue  # its turn comes from the queue of finished tasks
            if task.running_for(now) > self.evaluation_timeout:
                self._pool.abandon(task)
                error = EvaluationTimeout(f"evaluation took longer than {self.evaluation_timeout}s")
            elif task.started is None and no_worker:
                task.cancel()
                error = EvaluationTimeout("no evaluation worker is free: every one is stuck in a hung evaluation")
            else:
                continue
            del waiting[key]
            self._hand_on_safely(pending, error)

    def process(self, pending: PendingTrace) -> None:
        self.process_all([pending])

    def _hand_on_safely(self, pending: PendingTrace, outcome: list[Evaluation] | BaseException) -> None:
        """Hand a trace on; when that fails (the store: a busy database, a full disk) it is kept to be tried
        again at the next tick, and the other traces go on. Its spans are still in the inbox on disk."""
        try:
            self._hand_on(pending, outcome)
        except Exception:
            logger.exception("trace %s could not be handed on; trying again", pending.trace_id.hex())
            self._retry.append(pending)

    def _hand_on(self, pending: PendingTrace, outcome: list[Evaluation] | BaseException) -> None:
        if pending.labelled is None:
            pending.labelled = self._label(pending, outcome)
        evaluations: list[Evaluation] = pending.labelled
        agent_name = next((e.run.agent_name for e in evaluations if e.run.agent_name), None)
        payload = encode_request(pending.spans)
        if self.downstream:
            handoff = Handoff(payload, len(pending.spans), pending.trace_id, frozenset(pending.inbox_ids))
            if self.offer is None or not self.offer(handoff):
                self.store.outbox_add_from_inbox([(payload, len(pending.spans), pending.trace_id, pending.inbox_ids)])
            self.notify()
            if evaluations:  # the results, not the spans (those are in the trace store): for traces, report
                try:
                    self.store.save_trace(pending.trace_id.hex(), agent_name, [e.to_dict() for e in evaluations], b"")
                except Exception:  # the trace is handed on: trying again would deliver and label it twice
                    logger.exception("trace %s: its results could not be kept in the store", pending.trace_id.hex())
        else:
            self.store.save_trace(
                pending.trace_id.hex(),
                agent_name,
                [e.to_dict() for e in evaluations],
                payload,
                from_inbox=(pending.trace_id, pending.inbox_ids),  # one transaction: a retry never saves it twice
            )
            self.metrics.spans_exported.add(len(pending.spans))
        if evaluations:
            try:  # the trace is handed on: nothing after this may send it round again
                _log_evaluated(pending.trace_id.hex(), evaluations, self.metrics.agent(agent_name))
                self._judge_later(pending, evaluations)
            except Exception:
                logger.exception("trace %s: after it was handed on", pending.trace_id.hex())

    # --- the judge, after the detectors ---------------------------------------------------------------------

    def _judge_later(self, pending: PendingTrace, evaluations: list[Evaluation]) -> None:
        """Send the runs the cascade chooses to the judge; its findings follow as a span of their own."""
        cascade, pool = self.cascade, self._judge_pool
        if cascade is None or pool is None or pending.judge_submitted:
            return
        chosen = [e for e in evaluations if cascade.wants(e)]
        pending.judge_submitted = True  # handed on again after a store error: not judged twice
        if not chosen:
            return
        self._judging = [t for t in self._judging if not t.done()]
        if len(self._judging) >= self.max_judging or self._judging_stopped:
            for _ in chosen:
                self.metrics.judge_event(JudgeEvent("budget_refused", ""))
            return
        self._judging.append(pool.submit(self._judge, pending.trace_id, chosen))

    def _judge(self, trace_id: bytes, evaluations: list[Evaluation]) -> None:
        try:
            self._judge_runs(trace_id, evaluations)
        except Exception:  # a task nobody waits on: said here, or never
            logger.exception("trace %s: the judge's work failed", trace_id.hex())

    def _judge_runs(self, trace_id: bytes, evaluations: list[Evaluation]) -> None:
        cascade = self.cascade
        assert cascade is not None and cascade.judge is not None
        for before in evaluations:
            if self._judging_stopped:
                return
            reason = cascade.reason(before) or "all"
            self.metrics.judge_runs.add(1, {"reason": reason})
            started = time.time_ns()
            try:
                after = cascade.judged(before)
            except Exception:  # a judge that breaks costs its findings only: the detectors' verdict stands
                logger.exception("trace %s: the judge failed", trace_id.hex())
                continue
            agent = self.metrics.agent(after.run.agent_name)
            request = follow_up_request(
                before, after, judge=cascade.judge.name, started_ns=started, ended_ns=time.time_ns(), agent_label=agent
            )
            if request is None:  # nothing added (or the budget refused it)
                continue
            for finding in judged_findings(before, after):
                if finding.counts and finding in after.failures:
                    self.metrics.failures.add(
                        1,
                        {
                            "mode": finding.mode,
                            "category": finding.category,
                            "outcome": finding.outcome,
                            "agent": agent,
                        },
                    )
            payload = request.SerializeToString()
            if self._judging_stopped:
                return  # serve is stopping: the store may be closed
            revised = [(before.to_dict(), after.to_dict())]
            try:
                if self.downstream:
                    self.store.outbox_add(payload, 1)
                    self.notify()
                    self.store.revise_results(trace_id.hex(), revised)
                elif self.store.revise_results(trace_id.hex(), revised):
                    # Kept with the trace, if the trace is still kept (not pruned while the judge thought).
                    self.store.save_trace(trace_id.hex(), after.run.agent_name, [], payload)
            except Exception:
                logger.exception("trace %s: the judge's findings could not be kept", trace_id.hex())

    def _label(self, pending: PendingTrace, outcome: list[Evaluation] | BaseException) -> list[Evaluation]:
        """Write the evaluations onto the trace's spans (or mark them unevaluated); the evaluations written."""
        if isinstance(outcome, list) and not outcome:
            return []  # nothing to write (not evaluated, or no run in the trace): no look at the spans
        spans: dict[str, Span] = {entry.span.span_id.hex(): entry.span for entry in pending.spans}
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            for evaluation in outcome:
                label_spans(spans, evaluation, self.metrics.agent(evaluation.run.agent_name))
                self._count_guard_recoveries(spans, evaluation)
            return outcome
        except Exception as exc:  # a slow or crashing evaluation must not cost a span: forward unlabelled
            logger.warning("trace %s forwarded unevaluated: %s", pending.trace_id.hex(), type(exc).__name__)
            self.metrics.evaluation_errors.add(1)
            mark_unevaluated(list(spans.values()), exc)
            return []

    def _count_guard_recoveries(self, spans: dict[str, Span], evaluation: Evaluation) -> None:
        """Recovered failures at a step the in-loop guard had sent back: the failures the hook turned into
        recoveries (``agent_eval_guard_recoveries_total``)."""
        agent = self.metrics.agent(evaluation.run.agent_name)
        revised: set[str] = set()  # the step spans the guard sent back: the verdict is on them, or on a span of
        for span_id, span in spans.items():  # its own naming them (the step's span had ended)
            if any(
                event.name == "agent_eval.guard.verdict"
                and any(
                    kv.key == "agent_eval.guard.action" and kv.value.string_value == "revise" for kv in event.attributes
                )
                for event in span.events
            ):
                named = next(
                    (kv.value.string_value for kv in span.attributes if kv.key == sc.AGENT_EVAL_GUARD_STEP_SPAN_ID),
                    None,
                )
                revised.add(named or span_id)
        for finding in evaluation.failures:
            if finding.outcome == "recovered" and (finding.span_id or "") in revised:
                self.metrics.guard_recoveries.add(1, {"mode": finding.mode, "agent": agent})

    def _evaluate_open(self, pending: PendingTrace, spans: list[SpanEntry]) -> list[Evaluation]:
        """The runs of a trace that is still open, as far as they went (``complete=False``: rules about how a
        run ends stay quiet). Only the spans new since the last look are decoded, and only the steps new since
        then and those it judged as new are judged (``focus``; see :meth:`TraceReading.steps_to_judge`): a
        step's findings are those a look at the whole trace would make at it."""
        if self._evaluators is not None:
            return self._evaluators.evaluate(spans, complete=False, timeout=self.evaluation_timeout)
        reading = _reading(pending)
        looks = []
        for run in reading.runs(spans):
            steps = reading.steps_to_judge(run)
            if steps:
                looks.append(self.engine.evaluate(run, complete=False, focus=steps))
        return looks

    def _evaluate(self, pending: PendingTrace) -> list[Evaluation]:
        started = time.perf_counter()
        if self._evaluators is not None:
            evaluations = self._evaluators.evaluate(pending.spans, complete=True, timeout=self.evaluation_timeout)
        else:
            evaluations = [self.engine.evaluate(run) for run in _reading(pending).runs(pending.spans)]
        # The last use of the decoded spans: a trace waiting to be handed on does not hold them.
        pending.reading = None
        seconds = time.perf_counter() - started
        for evaluation in evaluations:
            self.metrics.record(evaluation, seconds / max(len(evaluations), 1))
        return evaluations


def _log_evaluated(trace_id: str, evaluations: list[Evaluation], agent: str) -> None:
    """One INFO line per evaluated trace: its id, agent, outcome and failure modes (never what was said: no
    critique, no message). The agent is the metrics' label for it (``redacted`` when the name looks like an
    e-mail or an id), so a log line holds no more than ``/metrics`` does."""
    outcomes = {e.outcome for e in evaluations}
    outcome = next(o for o in ("terminal", "recovered", "success") if o in outcomes or o == "success")
    modes = sorted({f"{f.outcome}:{f.category}.{f.mode}" for e in evaluations for f in e.failures if f.counts})
    logger.info(
        "trace %s evaluated: agent %s, outcome %s, failures %s", trace_id, agent, outcome, ", ".join(modes) or "-"
    )


def _reading(pending: PendingTrace) -> TraceReading:
    if pending.reading is None:  # the pipeline thread and the evaluation workers: made once, under the GIL
        pending.reading = TraceReading()
    return pending.reading
