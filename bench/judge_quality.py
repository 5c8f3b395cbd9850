"""How well evaluation tells failed runs from successful ones with an evaluation model in the cascade: the same
table as ``bench/quality.py``, for the detectors alone, the judge alone and the cascade, with the judge's
calls, tokens and latency per run. For anyone with an OpenAI-compatible endpoint (vLLM, Ollama, OpenAI, an
evaluation model served that way); no endpoint is reachable where this project's figures are made.

Run from the repository root::

    AGENT_EVAL_JUDGE_API_KEY=... .venv/bin/python bench/judge_quality.py \\
        --judge-base-url http://localhost:8000/v1 --judge-model my-judge            # every run, --judge all
    .venv/bin/python bench/judge_quality.py --judge-base-url ... --judge-model ... \\
        --cascade suspicious --limit 40                                              # cheaper: 40 runs a file

Ground truth is the benchmark's reward (``reward == 0``: the run failed), read only to score, as in
``quality.py``; runs are evaluated reference-free, their answers removed. "judge alone" is the judge with
no detector (``Engine([])``); "detectors" is ``Engine()``; "cascade" is the detectors with the judge where
``--cascade`` says (``all`` by default: every run judged). A call that fails counts in the errors column
and leaves the detectors' verdict. Calls are cached within a run of the script: the judge-alone and the
cascade settings ask the same questions and pay once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import DEFAULT_DATA, Result, discover, fmt, metrics, table

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.evaluate.findings import Evaluation
from otel_agent_eval.evaluate.judge import Cascade, CascadeConfig, ChatClient, JudgeEvent, LLMJudge


class Tally:
    """The judge's calls, tokens, latencies and errors, from its events."""

    def __init__(self) -> None:
        self.calls = self.prompt = self.completion = self.errors = self.cached = self.refused = 0
        self.seconds: list[float] = []

    def __call__(self, event: JudgeEvent) -> None:
        if event.kind == "call":
            self.calls += 1
            self.prompt += event.prompt_tokens
            self.completion += event.completion_tokens
            self.seconds.append(event.seconds)
        elif event.kind == "error":
            self.errors += 1
        elif event.kind == "cache_hit":
            self.cached += 1
        elif event.kind == "budget_refused":
            self.refused += 1


def result_of(index: int, failed: bool | None, evaluation: Evaluation) -> Result:
    return Result(index, None, failed, evaluation.outcome, evaluation.failure_score, ())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--judge-base-url", default=os.environ.get("AGENT_EVAL_JUDGE_BASE_URL"))
    parser.add_argument("--judge-model", default=os.environ.get("AGENT_EVAL_JUDGE_MODEL"))
    parser.add_argument("--cascade", choices=("suspicious", "sampled", "all"), default="all")
    parser.add_argument("--limit", type=int, default=0, help="runs per file at most (0: all)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run for the judge")
    args = parser.parse_args(argv)
    if not args.judge_base_url or not args.judge_model:
        parser.error("--judge-base-url and --judge-model (or AGENT_EVAL_JUDGE_BASE_URL / _MODEL) are needed")
    tally = Tally()
    client = ChatClient(args.judge_base_url, args.judge_model, api_key=os.environ.get("AGENT_EVAL_JUDGE_API_KEY"))
    judge = LLMJudge(client, run_timeout=args.timeout, on_event=tally)
    unlimited = CascadeConfig(mode="all", calls_per_minute=1e9, tokens_per_minute=1e12)
    settings = {
        "detectors": (Engine(), None),
        "judge alone": (Engine([], calibration=None), Cascade(Engine([], calibration=None), judge, unlimited)),
        "cascade": (Engine(), Cascade(Engine(), judge, replace(unlimited, mode=args.cascade))),
    }
    print(f"# Judge quality: {args.judge_model} at {args.judge_base_url}, cascade {args.cascade}\n")
    rows = []
    for name, (engine, cascade) in settings.items():
        before = (tally.calls, tally.prompt, tally.completion, tally.errors, len(tally.seconds))
        results: list[Result] = []
        runs = 0
        started = time.perf_counter()
        for df in discover(args.data.resolve()):
            truth = df.failed()
            for run in df.runs[: args.limit or None]:
                assert run.source is not None
                free = replace(run, reference=None)
                evaluation = cascade.evaluate(free) if cascade is not None else engine.evaluate(free)
                results.append(result_of(run.source.index, truth[run.source.index], evaluation))
                runs += 1
        wall = time.perf_counter() - started
        m = metrics(results)
        calls = tally.calls - before[0]
        latencies = tally.seconds[before[4] :]
        rows.append(
            [
                name,
                str(m["runs"]),
                str(m["failed"]),
                str(m["flagged"]),
                fmt(m["balanced_accuracy"]),
                fmt(m["recall"]),
                fmt(m["specificity"]),
                fmt(m["precision"]),
                fmt(m["auroc"]),
                f"{calls / max(runs, 1):.2f}",
                f"{(tally.prompt - before[1] + tally.completion - before[2]) / max(runs, 1):,.0f}",
                f"{statistics.median(latencies):.2f}" if latencies else "-",
                str(tally.errors - before[3]),
                f"{wall / max(runs, 1):.2f}",
            ]
        )
    header = ["setting", "runs", "failed", "flagged", "balanced acc.", "recall", "specificity", "precision"]
    header += ["AUROC", "calls/run", "tokens/run", "call p50 s", "errors", "s/run"]
    print(table(header, rows, "l" + "r" * (len(header) - 1)))
    print(f"\ncache hits: {tally.cached}; budget refusals: {tally.refused}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
