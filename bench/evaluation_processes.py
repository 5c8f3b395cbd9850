"""Evaluation on every core: traces evaluated per second by ``--processes`` 1 and 2 worker processes, beside the
threads inside ``serve`` (``--processes 0``), on the same traces in the same run.

Run from the repository root::

    .venv/bin/python bench/evaluation_processes.py            # 3 rounds over every recorded run
    .venv/bin/python bench/evaluation_processes.py --quick    # 1 round

What is timed is the processor's own evaluation path without the network: the spans of each recorded run (as
``RunSpanWriter`` writes them, encoded as ``bench/processor.py`` sends them) are decoded into the processor's span
entries once, then evaluated by :class:`ProcessEvaluators` (each trace serialized, sent to an idle worker, read
into runs and evaluated there, the evaluations sent back) from as many driver threads as there are workers, as
the pipeline does; the baseline evaluates in this process on ``--workers 2`` threads. Reported: traces and spans
per second (wall), CPU µs per span of this process and of the workers (from ``/proc``), and the ratio of two
workers to one. The evaluator caches what it works out of a text; every variant starts cold (fresh workers;
the caches emptied before the threads run), as traces never seen before are. The goal (issue 11, item 6): on
two idle cores, two workers give at least 1.8x one. The machine
is shared: the ``busy`` column says how much of the run's wall time the two cores were busy, all processes
included, so a ratio measured on a loaded machine can be read as such.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from processor import build_templates
from speed import clear_text_caches

from otel_agent_eval.evaluate.findings import Evaluation
from otel_agent_eval.processor.assembly import ResourceSpansBatch, SpanEntry
from otel_agent_eval.processor.evaluation_process import ProcessEvaluators
from otel_agent_eval.processor.trace_reading import TraceReading
from otel_agent_eval.processor.workers import EvaluationConfig, engine_for

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _busy_seconds() -> float:
    """Seconds all cores were busy, since boot (every process on the machine)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS


def _drive(
    traces: list[list[SpanEntry]], threads: int, evaluate: Callable[[list[SpanEntry]], list[Evaluation]]
) -> None:
    """Evaluate every trace, ``threads`` at a time, as the pipeline's pool does."""
    position = iter(range(len(traces)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                return
            evaluate(traces[i])

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def measure(traces: list[list[SpanEntry]], processes: int) -> dict[str, float]:
    spans = sum(len(t) for t in traces)
    config = EvaluationConfig()
    workers_pids: list[int] = []
    if processes:
        evaluators = ProcessEvaluators(config, processes)
        workers_pids = [p.pid for p in multiprocessing.active_children() if p.pid is not None]

        def evaluate(entries: list[SpanEntry]) -> list[Evaluation]:
            return evaluators.evaluate(entries, complete=True, timeout=60)

        threads = processes
    else:
        engine = engine_for(config)
        clear_text_caches()  # as cold as a fresh worker: the rounds repeat the same traces

        def evaluate(entries: list[SpanEntry]) -> list[Evaluation]:
            return [engine.evaluate(run) for run in TraceReading().runs(entries)]  # as Pipeline._evaluate

        threads = 2
    own = time.process_time()
    workers_before = sum(_cpu_seconds(pid) for pid in workers_pids)
    busy = _busy_seconds()
    start = time.perf_counter()
    _drive(traces, threads, evaluate)
    wall = time.perf_counter() - start
    busy = _busy_seconds() - busy
    workers_cpu = sum(_cpu_seconds(pid) for pid in workers_pids) - workers_before
    own = time.process_time() - own
    if processes:
        evaluators.shutdown()
    return {
        "traces/s": len(traces) / wall,
        "spans/s": spans / wall,
        "serve µs/span": own / spans * 1e6,
        "workers µs/span": workers_cpu / spans * 1e6,
        "busy": busy / (wall * (os.cpu_count() or 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    templates = build_templates(args.data, 1, 1)
    traces = [
        ResourceSpansBatch.of(ExportTraceServiceRequest.FromString(t.payload).resource_spans).entries for t in templates
    ]
    spans = sum(len(t) for t in traces)
    print(
        f"{len(traces)} traces, {spans} spans; {os.cpu_count()} cores; {rounds} round(s), variants shuffled per round"
    )
    results: dict[int, list[dict[str, float]]] = {0: [], 1: [], 2: []}
    rng = random.Random(1)
    for _ in range(rounds):
        order = [0, 1, 2]
        rng.shuffle(order)
        for processes in order:
            results[processes].append(measure(traces, processes))
    names = {0: "threads in serve (--processes 0, 2 threads)", 1: "--processes 1", 2: "--processes 2"}
    print()
    print("| variant | traces/s | spans/s | serve CPU µs/span | workers CPU µs/span | cores busy |")
    print("|---|---:|---:|---:|---:|---:|")
    for processes, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"| {names[processes]} | {med['traces/s']:,.1f} | {med['spans/s']:,.0f} | {med['serve µs/span']:.1f} | "
            f"{med['workers µs/span']:.1f} | {med['busy']:.0%} |"
        )
    ratios = [two["spans/s"] / one["spans/s"] for one, two in zip(results[1], results[2], strict=True)]
    over = [one["spans/s"] / base["spans/s"] for base, one in zip(results[0], results[1], strict=True)]
    print()
    print(f"two workers / one: {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"one worker / threads in serve: {statistics.median(over):.2f}x")


if __name__ == "__main__":
    main()
