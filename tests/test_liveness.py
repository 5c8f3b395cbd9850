"""The processor's threads outlive any one failure: a store error, an unreadable refusal, a failed write in
a transaction. Nothing acknowledged is dropped, and nothing stops flowing for good."""

from __future__ import annotations

import sqlite3
import urllib.error
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otlp_receiver import OtlpReceiver
from test_processor import config, metric_total, received_records, send_runs, wait_for

from otel_agent_eval.processor import Processor
from otel_agent_eval.processor.export import OutboxExporter, classify, sender_for
from otel_agent_eval.processor.metrics import ProcessorMetrics
from otel_agent_eval.processor.store import OutboxRow, Store


def test_a_failed_write_in_a_transaction_rolls_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.outbox_add(b"payload", 1)
    row = store.outbox_batch(10, 10_000)[0]
    broken = OutboxRow(row.id, None, row.spans, row.attempts, row.queued)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):  # a NOT NULL payload, standing for BUSY or a disk error
        store.deadletter_add(broken, reason="X", code=1, downstream="d", message="m", trace_ids=[])
    assert not store._db.in_transaction
    store.inbox_add(b"next", {b"\x01" * 16})  # would be "cannot start a transaction within a transaction"
    assert store.outbox_size() == 1 and store.inbox_size() == 1


def test_an_unreadable_refusal_is_transient_never_an_exception() -> None:
    headers = Message()
    headers["Retry-After"] = "\u00b2"  # "²".isdigit() is True, float("²") is not
    error = urllib.error.HTTPError("http://x/v1/traces", 503, "busy", headers, None)
    refusal = classify(error)
    assert refusal.retryable


class Flaky(Store):
    """A store whose next writes fail, as a busy database or a full disk would."""

    fail_outbox = 0

    def outbox_add(self, payload: bytes, spans: int) -> None:
        if self.fail_outbox > 0:
            self.fail_outbox -= 1
            raise sqlite3.OperationalError("database is locked")
        super().outbox_add(payload, spans)

    fail_batches = 0

    def outbox_batch(self, max_requests: int, max_bytes: int) -> Any:
        if self.fail_batches > 0:
            self.fail_batches -= 1
            raise sqlite3.OperationalError("database is locked")
        return super().outbox_batch(max_requests, max_bytes)


def test_the_exporter_thread_outlives_a_store_error(tmp_path: Path) -> None:
    with OtlpReceiver() as downstream:
        store = Flaky(tmp_path / "s.sqlite")
        store.fail_batches = 2
        store.outbox_add(b"", 0)
        metrics = ProcessorMetrics([InMemoryMetricReader()])
        target = f"grpc://{downstream.endpoint}"
        exporter = OutboxExporter(store, sender_for(target), metrics, downstream=target)
        exporter.start()
        try:
            wait_for(lambda: store.outbox_size() == 0)
            assert exporter._thread is not None and exporter._thread.is_alive()
        finally:
            exporter.stop()


def _failing(fn: Callable[..., Any], times: int) -> Any:
    """``fn``, raising a busy database's error the first ``times`` calls."""
    left = [times]

    def flaky(*args: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return fn(*args)

    flaky.left = left  # type: ignore[attr-defined]
    return flaky


def test_the_pipeline_outlives_a_store_error_and_delivers_later(
    tmp_path: Path, running: Callable[..., Processor], monkeypatch: pytest.MonkeyPatch
) -> None:
    with OtlpReceiver() as downstream:
        processor = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}"))
        store, exporter = processor.store, processor.exporter
        assert exporter is not None
        # Handed on by the outbox (the exporter takes nothing in memory): writing it there fails twice first.
        to_outbox = _failing(store.outbox_add_from_inbox, 2)
        monkeypatch.setattr(store, "outbox_add_from_inbox", to_outbox)
        monkeypatch.setattr(exporter, "offer", lambda handoff: False)
        sent = send_runs(processor.grpc.endpoint, runs=2)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == sent, timeout=60)
        assert to_outbox.left == [0] and processor.pipeline._thread is not None
        assert processor.pipeline._thread.is_alive()
        # Taken at once: marking the delivered traces out of the inbox fails twice first.
        monkeypatch.undo()
        done = _failing(store.inbox_done_many, 2)
        monkeypatch.setattr(store, "inbox_done_many", done)
        more = send_runs(processor.grpc.endpoint, runs=1)  # type: ignore[union-attr]
        wait_for(lambda: downstream.span_count() == sent + more, timeout=60)
        wait_for(lambda: done.left == [0] and store.inbox_size() == 0 and store.outbox_size() == 0, timeout=30)
        assert exporter.thread is not None and exporter.thread.is_alive()
        records = received_records(downstream)
    # Handed on again after the errors, not evaluated or labelled again: each failure one event, each run counted once.
    labelled = [r for r in records if r.attributes.get("agent_eval.failure.mode")]
    assert len(labelled) == 3 and all(
        sum(e.name == "gen_ai.evaluation.result" for e in r.events) == 1 for r in labelled
    )
    assert metric_total(processor, "agent_eval_traces_total") == 3


def test_a_store_error_keeping_a_trace_keeps_it_once(
    tmp_path: Path, running: Callable[..., Processor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a downstream: kept and out of the inbox in one transaction, so a failure and a retry keep it once."""
    processor = running(config(tmp_path))
    store = processor.store
    monkeypatch.setattr(store, "_inbox_done", _failing(store._inbox_done, 1))
    send_runs(processor.grpc.endpoint, runs=1)  # type: ignore[union-attr]
    wait_for(lambda: len(store.recent_traces()) == 1 and store.inbox_size() == 0, timeout=30)
    [kept] = store.recent_traces()
    assert len(kept.results) == 1 and kept.failures == 1  # one evaluation, its failure once
    assert metric_total(processor, "agent_eval_traces_total") == 1
