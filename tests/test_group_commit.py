"""Group commit of the inbox: requests received while another is being written share its next transaction, and
each receiver returns only once the transaction holding its request has committed (or failed)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from test_processor import wait_for

from otel_agent_eval.processor.store import Store


def _add_in_threads(store: Store, payloads: list[bytes | None]) -> tuple[list[threading.Thread], dict[int, object]]:
    """Each payload added from its own thread, as the receivers' threads do; results by position (an inbox id
    or the exception raised)."""
    results: dict[int, object] = {}

    def add(i: int, payload: bytes | None) -> None:
        try:
            results[i] = store.inbox_add(payload, {bytes([i]) * 16})  # type: ignore[arg-type]
        except Exception as exc:  # the test looks at what each receiver got
            results[i] = exc

    threads = [threading.Thread(target=add, args=(i, p)) for i, p in enumerate(payloads)]
    for thread in threads:
        thread.start()
    return threads, results


def test_requests_queued_behind_a_commit_share_one_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", fsync=True)
    with store._lock:  # a commit in progress: the receivers' requests queue behind it
        threads, results = _add_in_threads(store, [b"p%d" % i for i in range(8)])
        wait_for(lambda: len(store._queued) == 8)
        assert results == {}  # nobody acknowledged before its request is committed
    for thread in threads:
        thread.join()
    assert store.inbox_commits == 1  # the first to get the store wrote all eight
    ids = sorted(results.values())  # type: ignore[type-var]
    assert len(set(ids)) == 8 and all(isinstance(i, int) for i in ids)
    pending = {inbox_id: payload for inbox_id, payload, _ in store.inbox_pending()}
    assert {pending[results[i]] for i in range(8)} == {b"p%d" % i for i in range(8)}  # type: ignore[index]
    store.close()


def test_a_failed_group_commit_fails_every_request_in_it_and_the_next_succeeds(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    with store._lock:
        # A NOT NULL payload stands for what fails a whole transaction (the database busy, a disk error).
        threads, results = _add_in_threads(store, [b"a", None, b"c"])
        wait_for(lambda: len(store._queued) == 3)
    for thread in threads:
        thread.join()
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results.values())  # none acknowledged
    assert store.inbox_size() == 0 and not store._db.in_transaction
    assert isinstance(store.inbox_add(b"next", {b"\x09" * 16}), int)
    assert store.inbox_size() == 1 and store.inbox_commits == 1
    store.close()


def test_a_lone_request_is_committed_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    first, second = store.inbox_add(b"x", {b"\x01" * 16}), store.inbox_add(b"y", {b"\x02" * 16})
    assert second > first and store.inbox_commits == 2
    store.close()


@pytest.mark.parametrize("fsync", [False, True])
def test_fsync_sets_the_sync_level(tmp_path: Path, fsync: bool) -> None:
    store = Store(tmp_path / "s.sqlite", fsync=fsync)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == (2 if fsync else 1)  # FULL, NORMAL
    store.close()
