"""Early looks at open traces: the CPU of looking at a long conversation while it is still going, and what the
looks find, as the processor looks now against looking at the whole trace each time, in the same run.

Run from the repository root::

    .venv/bin/python bench/early_evaluation.py             # 3 rounds, a look every 4 spans
    .venv/bin/python bench/early_evaluation.py --every 2   # a look every 2 spans (a chattier agent)
    .venv/bin/python bench/early_evaluation.py --quick     # 1 round

``serve`` looks at a trace that is still open every ``--early-evaluation-interval`` seconds (5 by default) and
counts the failures it finds (``agent_eval_early_failures_total``), then evaluates it whole when it is
complete. Here every recorded run's spans (as ``RunSpanWriter`` writes them, in the order they end) arrive
``--every`` spans at a time, with a look after each arrival and the final evaluation at the end, through the
processor's own ``Pipeline._evaluate_open`` and ``Pipeline._evaluate``: each span decoded once, each look
judging the steps new since the last look and those that look judged as new. The baseline, "whole trace at
each look", is what a look did before: every span of the trace so far decoded again, every step judged again.
Reported: CPU µs per span for the looks and for the final evaluation, the early failures found (distinct
(evaluator, mode, step), counted once, as the processor counts them), and whether the final evaluations are
the same (they must be: only the looks differ).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from processor import build_templates
from speed import clear_text_caches

from otel_agent_eval.evaluate import Engine, PackLibrary
from otel_agent_eval.evaluate.findings import Evaluation
from otel_agent_eval.processor.assembly import PendingTrace, ResourceSpansBatch, SpanEntry, TraceAssembler
from otel_agent_eval.processor.metrics import ProcessorMetrics
from otel_agent_eval.processor.pipeline import Pipeline
from otel_agent_eval.processor.store import Store
from otel_agent_eval.processor.trace_reading import TraceReading


def whole_look(engine: Engine, spans: list[SpanEntry]) -> list[Evaluation]:
    """A look as it was: every span decoded again, every step judged again."""
    return [engine.evaluate(run, complete=False) for run in TraceReading().runs(spans)]


def early_keys(evaluations: list[Evaluation], seen: set[tuple[str, str, int]]) -> None:
    for evaluation in evaluations:
        for finding in evaluation.failures:
            if finding.counts:
                seen.add((finding.evaluator, finding.mode, finding.step))


def run_variant(pipeline: Pipeline, traces: list[list[SpanEntry]], every: int, variant: str) -> dict[str, Any]:
    clear_text_caches()  # each variant starts cold, as traces never seen before
    look_ns = final_ns = spans = looks = 0
    found: list[set[tuple[str, str, int]]] = []
    finals: list[str] = []
    clock = time.process_time_ns
    for entries in traces:
        pending = PendingTrace(trace_id=entries[0].span.trace_id, first_seen=0.0, last_seen=0.0)
        seen: set[tuple[str, str, int]] = set()
        for end in range(every, len(entries), every):
            pending.spans = entries[:end]
            start = clock()
            if variant == "whole":
                evaluations = whole_look(pipeline.engine, pending.spans)
            else:
                evaluations = pipeline._evaluate_open(pending, list(pending.spans))
            look_ns += clock() - start
            looks += 1
            early_keys(evaluations, seen)
        pending.spans = entries
        start = clock()
        if variant == "whole":
            pending.reading = None  # the final evaluation decoded the whole trace too
        evaluations = pipeline._evaluate(pending)
        final_ns += clock() - start
        spans += len(entries)
        found.append(seen)
        finals.append(repr([(e.outcome, e.failure_score, [f.to_dict() for f in e.findings]) for e in evaluations]))
    return {
        "look_us": look_ns / 1000 / spans,
        "final_us": final_ns / 1000 / spans,
        "looks": looks,
        "early": sum(len(s) for s in found),
        "found": found,
        "finals": finals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--every", type=int, default=4, help="spans arriving between two looks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    templates = build_templates(args.data, 1, 1)
    traces = []
    for template in templates:
        request = ExportTraceServiceRequest.FromString(template.payload)
        traces.append(ResourceSpansBatch.of(request.resource_spans).entries)
    if args.quick:
        traces = traces[:60]
    with tempfile.TemporaryDirectory(prefix="bench-early-") as tmp:
        store = Store(Path(tmp) / "agent-eval.sqlite")
        engine = Engine(packs=PackLibrary.with_builtins(()))
        pipeline = Pipeline(store, engine, TraceAssembler(), ProcessorMetrics(), downstream=False)
        variants = {"whole": "whole trace at each look (before)", "now": "new spans decoded, new steps judged (now)"}
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        rng = random.Random(1)
        for _ in range(args.rounds):
            order = list(variants)
            rng.shuffle(order)
            for variant in order:
                results[variant].append(run_variant(pipeline, traces, args.every, variant))
        store.close()
    spans = sum(len(t) for t in traces)
    print(f"{len(traces)} recorded runs, {spans:,} spans, a look every {args.every} spans, {args.rounds} round(s)\n")
    print("| looks | looks CPU µs/span | final CPU µs/span | early failures found | looks per trace |")
    print("|---|---:|---:|---:|---:|")
    med = {}
    for variant, title in variants.items():
        rs = results[variant]
        med[variant] = {k: statistics.median(r[k] for r in rs) for k in ("look_us", "final_us")}
        print(
            f"| {title} | {med[variant]['look_us']:.1f} | {med[variant]['final_us']:.1f} | {rs[0]['early']} "
            f"| {rs[0]['looks'] / len(traces):.1f} |"
        )
    print()
    base, now = results["whole"][0], results["now"][0]
    print(f"looks: now / before = {med['now']['look_us'] / med['whole']['look_us']:.2f}x CPU")
    same_finals = base["finals"] == now["finals"]
    missed = sum(len(b - n) for b, n in zip(base["found"], now["found"], strict=True))
    extra = sum(len(n - b) for b, n in zip(base["found"], now["found"], strict=True))
    print(f"final evaluations identical: {'yes' if same_finals else 'NO'}")
    print(f"early failures the whole-trace looks found and these did not: {missed}; found only by these: {extra}")
    if not same_finals:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
