"""The processor's durable state, in one SQLite file.

* ``inbox``: every export request as received, written before the receiver answers, and deleted once every
  trace in it has been evaluated and handed on. After a crash (even ``kill -9``) the inbox is read again, so a
  span acknowledged to a client is never lost.
* ``outbox``: labelled requests the downstream did not take at once, waiting for it; deleted only when the
  downstream accepted them, so an outage or a restart loses nothing. A labelled trace the downstream takes at
  once is never written here: until it is taken, its spans are still in the inbox (and would be evaluated and
  labelled again after a crash), and once taken it leaves the inbox in the same commit as the rest of its
  batch. ``attempts``: how many times each was sent and not taken.
* ``deadletter``: requests the downstream refused for good (bad data, too large even alone), moved out of the
  outbox so that they block nothing: the payload, when, the status code, the downstream, its (truncated) status
  message and the trace ids, for ``otel-agent-eval deadletter list`` / ``replay`` / ``purge``.
* ``traces``: the embedded trace store: each evaluated trace with its outcome, failure modes and results, and,
  when there is no downstream, its labelled spans, for ``otel-agent-eval traces`` / ``show`` / ``report``;
  the newest ``max_traces`` are kept.

SQLite in WAL mode: one writer at a time (a lock here), readers never block it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, received REAL NOT NULL, payload BLOB NOT NULL,
                                  open_traces INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbox_traces (inbox_id INTEGER NOT NULL, trace_id BLOB NOT NULL,
                                         PRIMARY KEY (inbox_id, trace_id));
CREATE INDEX IF NOT EXISTS inbox_traces_by_trace ON inbox_traces (trace_id);
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, queued REAL NOT NULL, spans INTEGER NOT NULL,
                                   attempts INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deadletter (id INTEGER PRIMARY KEY, failed REAL NOT NULL, queued REAL NOT NULL,
                                       reason TEXT NOT NULL, code INTEGER NOT NULL, downstream TEXT NOT NULL,
                                       message TEXT NOT NULL, attempts INTEGER NOT NULL, spans INTEGER NOT NULL,
                                       trace_ids TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS traces (trace_id TEXT PRIMARY KEY, evaluated REAL NOT NULL, agent TEXT,
                                   outcome TEXT, failure_score REAL, failures INTEGER, modes TEXT,
                                   result TEXT NOT NULL, spans BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS traces_by_time ON traces (evaluated);
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    payload: bytes  # an ExportTraceServiceRequest, serialized
    spans: int
    attempts: int  # sent and not taken, so far
    queued: float


@dataclass(frozen=True)
class DeadLetter:
    id: int
    failed: float  # when it was refused for good (Unix time)
    queued: float  # when it entered the outbox
    reason: str  # the status code's name: INVALID_ARGUMENT, INTERNAL, RESOURCE_EXHAUSTED, HTTP_400, ...
    code: int  # the gRPC status code's number, or the HTTP status
    downstream: str
    message: str  # the downstream's status message, truncated
    attempts: int
    spans: int
    trace_ids: list[str]
    size: int  # bytes of the payload


@dataclass(frozen=True)
class StoredTrace:
    trace_id: str
    evaluated: float
    agent: str | None
    outcome: str | None
    failure_score: float | None
    failures: int
    modes: list[str]
    results: list[dict[str, Any]]
    spans: bytes  # an ExportTraceServiceRequest, serialized


@dataclass
class _InboxWrite:
    """A request waiting for the group commit that writes it (see :meth:`Store.inbox_add`)."""

    payload: bytes
    trace_ids: set[bytes]
    inbox_id: int | None = None
    error: BaseException | None = None


class Store:
    def __init__(self, path: str | Path, *, max_traces: int | None = None, fsync: bool = False) -> None:
        self.path = Path(path)
        self.max_traces = max_traces
        """Evaluated traces kept at most (the oldest go first); ``None``: all."""
        self._saved = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._queued: list[_InboxWrite] = []
        self._queue_lock = threading.Lock()
        self.inbox_commits = 0
        """Transactions that wrote received requests (fewer than the requests when group commit joins them)."""
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is durable across a crash of this process; FULL syncs the log at every commit,
        # durable across a power loss too (group commit makes one sync serve every request queued behind it).
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, and ROLLBACK when a statement fails: a failed write (the database busy, a disk
        error) must not leave the connection inside a transaction every later BEGIN would refuse."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- inbox ---------------------------------------------------------------------------------------------

    def inbox_add(self, payload: bytes, trace_ids: set[bytes]) -> int:
        """Keep a received request until its traces are handed on; returns its inbox id once it is committed.

        Group commit: receiver threads that call this while another one's transaction is being written queue
        their requests; the next thread to get the store writes every queued request in one transaction (one
        commit, one sync with ``fsync``), and each caller returns when the transaction that holds its request
        has committed. If that transaction fails, every request in it fails (none is acknowledged)."""
        write = _InboxWrite(payload, trace_ids)
        with self._queue_lock:
            self._queued.append(write)
        with self._lock:
            if write.inbox_id is None and write.error is None:  # not written by the thread before us
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._write_inbox(batch)
        if write.error is not None:
            raise write.error
        assert write.inbox_id is not None
        return write.inbox_id

    def _write_inbox(self, batch: list[_InboxWrite]) -> None:  # with the lock
        try:
            with self._transaction():
                now = time.time()
                for write in batch:
                    cur = self._db.execute(
                        "INSERT INTO inbox (received, payload, open_traces) VALUES (?, ?, ?)",
                        (now, write.payload, len(write.trace_ids)),
                    )
                    inbox_id = int(cur.lastrowid or 0)
                    self._db.executemany(
                        "INSERT OR IGNORE INTO inbox_traces (inbox_id, trace_id) VALUES (?, ?)",
                        [(inbox_id, t) for t in write.trace_ids],
                    )
                    write.inbox_id = inbox_id
        except BaseException as exc:
            for write in batch:
                write.inbox_id, write.error = None, exc
            return
        self.inbox_commits += 1

    def _inbox_done(self, trace_id: bytes, inbox_ids: set[int]) -> None:  # with the lock, in a transaction
        """The spans of ``trace_id`` that came in these requests were handed on; a request all of whose traces
        are done leaves the inbox (later requests with more spans of the same trace stay until theirs are)."""
        for inbox_id in inbox_ids:
            cur = self._db.execute("DELETE FROM inbox_traces WHERE inbox_id = ? AND trace_id = ?", (inbox_id, trace_id))
            if cur.rowcount:
                self._db.execute("UPDATE inbox SET open_traces = open_traces - 1 WHERE id = ?", (inbox_id,))
                # By id: a scan of the whole inbox would read every payload and grow with the backlog.
                self._db.execute("DELETE FROM inbox WHERE id = ? AND open_traces <= 0", (inbox_id,))

    def inbox_done_many(self, done: list[tuple[bytes, set[int]]]) -> None:
        """Delivered traces leave the inbox, in one transaction (one commit for a batch): a request all of whose
        traces are done leaves it (later requests with more spans of the same trace stay until theirs are)."""
        with self._lock, self._transaction():
            for trace_id, inbox_ids in done:
                self._inbox_done(trace_id, inbox_ids)

    def outbox_add_from_inbox(self, items: list[tuple[bytes, int, bytes, set[int]]]) -> None:
        """Labelled requests the downstream did not take at once, ``(payload, spans, trace id, inbox ids)``: into
        the outbox and out of the inbox in one transaction, so that each is on disk in exactly one of them."""
        with self._lock, self._transaction():
            now = time.time()
            for payload, spans, trace_id, inbox_ids in items:
                self._db.execute("INSERT INTO outbox (queued, spans, payload) VALUES (?, ?, ?)", (now, spans, payload))
                self._inbox_done(trace_id, inbox_ids)

    def inbox_pending(self) -> Iterator[tuple[int, bytes, set[bytes]]]:
        """Requests received but not handed on, with the traces still open in each (after a restart: to be
        assembled again)."""
        with self._lock:
            rows = self._db.execute("SELECT id, payload FROM inbox ORDER BY id").fetchall()
            open_traces = self._db.execute("SELECT inbox_id, trace_id FROM inbox_traces").fetchall()
        by_request: dict[int, set[bytes]] = {}
        for inbox_id, trace_id in open_traces:
            by_request.setdefault(int(inbox_id), set()).add(bytes(trace_id))
        for inbox_id, payload in rows:
            yield int(inbox_id), bytes(payload), by_request.get(int(inbox_id), set())

    def inbox_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])

    # --- outbox --------------------------------------------------------------------------------------------

    def outbox_add(self, payload: bytes, spans: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO outbox (queued, spans, payload) VALUES (?, ?, ?)", (time.time(), spans, payload)
            )

    def outbox_done(self, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def outbox_failed(self, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])

    def outbox_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_batch(self, max_requests: int, max_bytes: int) -> list[OutboxRow]:
        """The oldest queued requests, in order, as many as fit in ``max_requests`` and ``max_bytes`` together;
        the oldest one alone when it is larger than ``max_bytes`` (it is sent on its own)."""
        with self._lock:
            sizes = self._db.execute(
                "SELECT id, length(payload) FROM outbox ORDER BY id LIMIT ?", (max(max_requests, 1),)
            ).fetchall()
            ids: list[int] = []
            total = 0
            for row_id, size in sizes:
                if ids and total + int(size) > max_bytes:
                    break
                ids.append(int(row_id))
                total += int(size)
            if not ids:
                return []
            rows = self._db.execute(
                f"SELECT id, payload, spans, attempts, queued FROM outbox WHERE id IN ({','.join('?' * len(ids))}) "
                "ORDER BY id",
                ids,
            ).fetchall()
        return [OutboxRow(int(i), bytes(p), int(n), int(a), float(q)) for i, p, n, a, q in rows]

    # --- dead letters ----------------------------------------------------------------------------------------

    def deadletter_add(
        self, row: OutboxRow, *, reason: str, code: int, downstream: str, message: str, trace_ids: list[str]
    ) -> int:
        """Move a request from the outbox to the dead letters (one transaction: it is in exactly one of them)."""
        with self._lock:
            with self._transaction():
                cur = self._db.execute(
                    "INSERT INTO deadletter (failed, queued, reason, code, downstream, message, attempts, spans, "
                    "trace_ids, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.time(),
                        row.queued,
                        reason,
                        code,
                        downstream,
                        message,
                        row.attempts,
                        row.spans,
                        json.dumps(trace_ids),
                        row.payload,
                    ),
                )
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
            return int(cur.lastrowid or 0)

    def deadletters(self, ids: list[int] | None = None) -> list[DeadLetter]:
        """The dead letters (all, or these), oldest first; without their payloads."""
        where, args = _ids_clause(ids)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, failed, queued, reason, code, downstream, message, attempts, spans, trace_ids, "
                f"length(payload) FROM deadletter{where} ORDER BY id",
                args,
            ).fetchall()
        return [
            DeadLetter(int(i), float(f), float(q), r, int(c), d, m, int(a), int(n), json.loads(t), int(size))
            for i, f, q, r, c, d, m, a, n, t, size in rows
        ]

    def deadletter_payload(self, dead_id: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM deadletter WHERE id = ?", (dead_id,)).fetchone()
        return bytes(row[0]) if row else None

    def deadletter_replay(self, ids: list[int] | None = None) -> int:
        """Move dead letters (all, or these) back to the outbox, at its end, attempts from 0. Returns how many."""
        where, args = _ids_clause(ids)
        with self._lock, self._transaction():
            self._db.execute(
                f"INSERT INTO outbox (queued, spans, payload) SELECT ?, spans, payload FROM deadletter{where} "
                "ORDER BY id",
                (time.time(), *args),
            )
            moved = self._db.execute(f"DELETE FROM deadletter{where}", args).rowcount
        return int(moved)

    def deadletter_purge(self, ids: list[int] | None = None, older_than: float | None = None) -> int:
        """Delete dead letters: these, or all, or (``older_than`` seconds) those refused longer ago than that."""
        where, ids_args = _ids_clause(ids)
        args: tuple[float, ...] = ids_args
        if older_than is not None:
            where += (" AND" if where else " WHERE") + " failed < ?"
            args = (*args, time.time() - older_than)
        with self._lock:
            return int(self._db.execute(f"DELETE FROM deadletter{where}", args).rowcount)

    def deadletter_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM deadletter").fetchone()[0])

    # --- the embedded trace store ----------------------------------------------------------------------------

    def save_trace(
        self,
        trace_id: str,
        agent: str | None,
        results: list[dict[str, Any]],
        spans: bytes,
        *,
        from_inbox: tuple[bytes, set[int]] | None = None,
    ) -> None:
        """Keep an evaluated trace. Spans of a trace that arrive after it was evaluated come as a second part:
        it is added to the first (spans and results), never replacing it. ``from_inbox`` (the trace id and its
        inbox requests): it leaves the inbox in the same transaction, so that a failure leaves it in exactly one
        place, and trying again never adds it twice."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT agent, result, spans FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
            if row is not None:
                agent = agent or row[0]
                results = json.loads(row[1]) + results
                spans = bytes(row[2]) + spans  # concatenated protobuf messages merge their repeated fields
            outcome, score, failures, modes = _summary(results)
            self._saved += 1
            if self.max_traces is not None and self._saved % _PRUNE_EVERY == 1:
                self._prune(self.max_traces)
            self._db.execute(
                "INSERT OR REPLACE INTO traces (trace_id, evaluated, agent, outcome, failure_score, failures, modes, "
                "result, spans) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    trace_id,
                    time.time(),
                    agent,
                    outcome,
                    score,
                    failures,
                    json.dumps(modes),
                    json.dumps(results),
                    spans,
                ),
            )
            if from_inbox is not None:
                self._inbox_done(*from_inbox)

    def revise_results(self, trace_id: str, revised: list[tuple[dict[str, Any], dict[str, Any]]]) -> bool:
        """Replace results of a kept trace, ``(as kept, revised)`` pairs (a judge's findings added to the
        detectors'), and its summary columns with them; ``False`` when the trace is no longer kept (pruned).
        Results added since (a later part of the trace) stay as they are."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT result FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
            if row is None:
                return False
            results = json.loads(row[0])
            for old, new in revised:
                results = [new if r == old else r for r in results]
            outcome, score, failures, modes = _summary(results)
            self._db.execute(
                "UPDATE traces SET outcome = ?, failure_score = ?, failures = ?, modes = ?, result = ? "
                "WHERE trace_id = ?",
                (outcome, score, failures, json.dumps(modes), json.dumps(results), trace_id),
            )
            return True

    def _prune(self, keep: int) -> None:  # with the lock
        """The oldest evaluated traces beyond ``keep`` leave the store (by time, through its index)."""
        self._db.execute(
            "DELETE FROM traces WHERE evaluated <= (SELECT evaluated FROM traces ORDER BY evaluated DESC "
            "LIMIT 1 OFFSET ?)",
            (keep,),
        )

    def recent_traces(self, limit: int = 20, outcome: str | None = None) -> list[StoredTrace]:
        query = "SELECT * FROM traces" + (" WHERE outcome = ?" if outcome else "") + " ORDER BY evaluated DESC LIMIT ?"
        args: tuple[Any, ...] = (outcome, limit) if outcome else (limit,)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [_stored(row) for row in rows]

    def get_trace(self, trace_id: str) -> StoredTrace | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM traces WHERE trace_id = ?", (trace_id.lower(),)).fetchone()
        return _stored(row) if row else None

    def all_results(self) -> Iterator[dict[str, Any]]:
        for _, _, _, results in self.evaluated_results():
            yield from results

    def evaluated_results(self) -> Iterator[tuple[str, float, str | None, list[dict[str, Any]]]]:
        """Every stored trace, oldest first, without its spans: ``(trace id, when it was evaluated (Unix time),
        agent, its results)``; read only (``report`` draws failures over time from it)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT trace_id, evaluated, agent, result FROM traces ORDER BY evaluated"
            ).fetchall()
        for trace_id, evaluated, agent, result in rows:
            yield str(trace_id), float(evaluated), agent, json.loads(result)


_PRUNE_EVERY = 100  # saves between two prunings: the store goes over its bound by at most this many


def _ids_clause(ids: list[int] | None) -> tuple[str, tuple[int, ...]]:
    if ids is None:
        return "", ()
    return f" WHERE id IN ({','.join('?' * len(ids))})", tuple(ids)


def _summary(results: list[dict[str, Any]]) -> tuple[str | None, float | None, int, list[str]]:
    """A kept trace's columns from its results: the worst outcome, the highest score, the failures (not the
    evaluator's own errors) and their ``outcome:category.mode``."""
    outcome = _worst((r.get("outcome") for r in results), ("terminal", "recovered", "success"))
    score = max((float(r.get("failure_score") or 0.0) for r in results), default=None)
    failures = [f for r in results for f in r.get("failures", ()) if f.get("category") != "evaluator"]
    return outcome, score, len(failures), sorted({f"{f['outcome']}:{f['category']}.{f['mode']}" for f in failures})


def _worst(values: Any, order: tuple[str, ...]) -> str | None:
    present = set(values)
    return next((v for v in order if v in present), None)


def _stored(row: tuple[Any, ...]) -> StoredTrace:
    trace_id, evaluated, agent, outcome, score, failures, modes, result, spans = row
    return StoredTrace(
        trace_id=trace_id,
        evaluated=evaluated,
        agent=agent,
        outcome=outcome,
        failure_score=score,
        failures=failures or 0,
        modes=json.loads(modes or "[]"),
        results=json.loads(result),
        spans=bytes(spans),
    )
