"""Group commit of the inbox: CPU and wall time per received request, with and without ``--fsync``, against a
transaction per request, from several receiver threads at once, in the same run.

Run from the repository root::

    .venv/bin/python bench/inbox_commit.py            # 3 rounds
    .venv/bin/python bench/inbox_commit.py --quick    # 1 round, fewer requests

What is timed is :meth:`Store.inbox_add` as the receivers call it: ``--threads`` threads (gRPC's and HTTP's
request threads stand for them) each writing ``--requests`` requests of one recorded run's size (the payload
``bench/processor.py`` sends). The baseline, "a transaction per request", is the same store with each request
written in its own transaction under the store's lock (what ``inbox_add`` did before group commit). Reported:
CPU µs and wall µs per request (this process: the threads and SQLite), and requests per commit. The machine is
shared and its disk too: compare the ratios in one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from processor import build_templates

from otel_agent_eval.processor.store import Store, _InboxWrite


def _one_transaction_each(store: Store) -> Callable[[bytes, set[bytes]], int]:
    """``inbox_add`` without grouping: each request its own transaction (the baseline)."""

    def add(payload: bytes, trace_ids: set[bytes]) -> int:
        write = _InboxWrite(payload, trace_ids)
        with store._lock:
            store._write_inbox([write])
        if write.error is not None:
            raise write.error
        assert write.inbox_id is not None
        return write.inbox_id

    return add


def run_variant(payload: bytes, *, grouped: bool, fsync: bool, threads: int, requests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-inbox-") as tmp:
        store = Store(Path(tmp) / "agent-eval.sqlite", fsync=fsync)
        add = store.inbox_add if grouped else _one_transaction_each(store)
        start = threading.Barrier(threads + 1)

        def receiver(n: int) -> None:
            start.wait()
            for i in range(requests):
                add(payload, {n.to_bytes(8, "big") + i.to_bytes(8, "big")})

        workers = [threading.Thread(target=receiver, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        cpu, wall = time.process_time(), time.perf_counter()
        start.wait()
        for worker in workers:
            worker.join()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        total = threads * requests
        assert store.inbox_size() == total
        commits = store.inbox_commits
        store.close()
    return {"cpu_us": 1e6 * cpu / total, "wall_us": 1e6 * wall / total, "per_commit": total / commits}


VARIANTS = [
    ("a transaction per request", False, False),
    ("group commit", True, False),
    ("a transaction per request, --fsync", False, True),
    ("group commit, --fsync", True, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=150, help="per thread")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 1, 40
    templates = build_templates(args.data, 1, 1)
    payload = statistics.median_low(sorted((t.payload for t in templates), key=len))
    print(f"{args.threads} threads x {args.requests} requests of {len(payload):,} bytes, {args.rounds} round(s)\n")
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in VARIANTS}
    rng = random.Random(1)
    for _ in range(args.rounds):
        order = list(VARIANTS)
        rng.shuffle(order)
        for name, grouped, fsync in order:
            results[name].append(
                run_variant(payload, grouped=grouped, fsync=fsync, threads=args.threads, requests=args.requests)
            )
    print("| variant | CPU µs/request | wall µs/request | requests per commit |")
    print("|---|---:|---:|---:|")
    med: dict[str, dict[str, float]] = {}
    for name, _, _ in VARIANTS:
        med[name] = {k: statistics.median(r[k] for r in results[name]) for k in results[name][0]}
        m = med[name]
        print(f"| {name} | {m['cpu_us']:.1f} | {m['wall_us']:.1f} | {m['per_commit']:.1f} |")
    print()
    for fsync in ("", ", --fsync"):
        base, grouped = med[f"a transaction per request{fsync}"], med[f"group commit{fsync}"]
        print(
            f"group commit / a transaction per request{fsync}: CPU {grouped['cpu_us'] / base['cpu_us']:.2f}x, "
            f"wall {grouped['wall_us'] / base['wall_us']:.2f}x"
        )


if __name__ == "__main__":
    main()
