"""``otel-agent-eval deadletter list|replay|purge``: on a real store, and beside a running ``serve``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner, Result
from otlp_receiver import OtlpReceiver
from test_outbox import POISON, refuse_trace, trace_id, trace_request
from test_processor import config, wait_for

from otel_agent_eval.cli import main
from otel_agent_eval.processor import Processor
from otel_agent_eval.processor.deadletter_cli import parse_duration
from otel_agent_eval.processor.store import Store


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["deadletter", *args])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A store with three dead letters (ids 1, 2, 3: traces 1, 2 and 3) and an empty outbox."""
    store = Store(tmp_path / "data" / "agent-eval.sqlite")
    for i in (1, 2, 3):
        store.outbox_add(trace_request(trace_id(i), spans=i), i)
    for row in store.outbox_batch(10, 10**9):
        store.deadletter_add(
            row,
            reason="INVALID_ARGUMENT",
            code=3,
            downstream="grpc://127.0.0.1:4319",
            message="unmarshal: invalid TraceID length",
            trace_ids=[trace_id(row.id).hex()],
        )
    assert store.outbox_size() == 0 and store.deadletter_size() == 3
    store.close()
    return tmp_path / "data"


def _store(data_dir: Path) -> Store:
    return Store(data_dir / "agent-eval.sqlite")


def test_list(data_dir: Path) -> None:
    listed = cli("list", "--data-dir", str(data_dir))
    assert listed.exit_code == 0, listed.output
    header, *lines = listed.stdout.splitlines()
    assert header.split()[:3] == ["id", "refused", "(UTC)"] and "trace ids" in header
    rows = lines[0::2]
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    first = rows[0].split()
    assert first[3:] == ["INVALID_ARGUMENT", "grpc://127.0.0.1:4319", "1", trace_id(1).hex()]
    assert rows[2].split()[-2] == "3"  # spans
    assert "unmarshal: invalid TraceID length" in lines[1]


def test_list_empty_and_missing_store(tmp_path: Path) -> None:
    Store(tmp_path / "data" / "agent-eval.sqlite").close()
    empty = cli("list", "--data-dir", str(tmp_path / "data"))
    assert empty.exit_code == 0 and "no dead letters" in empty.stderr
    missing = cli("list", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "no trace store here" in missing.stderr


def test_replay_moves_back_to_the_outbox(data_dir: Path) -> None:
    replayed = cli("replay", "2", "--data-dir", str(data_dir))
    assert replayed.exit_code == 0 and "moved 1 dead letter back to the outbox" in replayed.stdout
    store = _store(data_dir)
    [row] = store.outbox_batch(10, 10**9)
    assert row.payload == trace_request(trace_id(2), spans=2) and row.spans == 2 and row.attempts == 0
    assert [d.id for d in store.deadletters()] == [1, 3]
    store.close()
    everything = cli("replay", "--all", "--data-dir", str(data_dir))
    assert everything.exit_code == 0 and "moved 2 dead letters" in everything.stdout
    store = _store(data_dir)
    assert store.outbox_size() == 3 and store.deadletter_size() == 0
    store.close()


def test_purge(data_dir: Path) -> None:
    assert cli("purge", "1", "3", "--data-dir", str(data_dir)).stdout.strip() == "purged 2 dead letters"
    kept = cli("purge", "--older-than", "1h", "--data-dir", str(data_dir))
    assert kept.exit_code == 0 and kept.stdout.strip() == "purged 0 dead letters"  # refused just now
    store = _store(data_dir)
    assert [d.id for d in store.deadletters()] == [2]
    store._db.execute("UPDATE deadletter SET failed = ?", (time.time() - 2 * 86400,))  # refused two days ago
    store.close()
    assert cli("purge", "--older-than", "1d", "--data-dir", str(data_dir)).stdout.strip() == "purged 1 dead letter"
    store = _store(data_dir)
    assert store.deadletter_size() == 0 and store.outbox_size() == 0
    store.close()
    data = _store(data_dir)
    data.outbox_add(trace_request(trace_id(7)), 1)
    data.close()
    assert cli("purge", "--all", "--data-dir", str(data_dir)).exit_code == 0
    store = _store(data_dir)
    assert store.outbox_size() == 1  # purge touches dead letters only
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay"], "give dead letter ids"),
        (["replay", "abc"], "'abc': a dead letter's id is a number"),
        (["replay", "\u00b2"], "a dead letter's id is a number"),  # "²".isdigit() is True
        (["replay", "99999999999999999999999"], "a dead letter's id is a number"),  # past SQLite's integers
        (["replay", "2", "999"], "no dead letter 999"),
        (["replay", "1", "--all"], "not both"),
        (["purge"], "exactly one of"),
        (["purge", "1", "--all"], "exactly one of"),
        (["purge", "--all", "--older-than", "1d"], "exactly one of"),
        (["purge", "--older-than", "soon"], "--older-than 'soon': a duration"),
        (["purge", "-1"], "No such option"),
        (["purge", "1", "999"], "no dead letter 999 in"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(data_dir: Path, args: list[str], message: str) -> None:
    result = cli(*args, "--data-dir", str(data_dir))
    assert result.exit_code == 2 and message in result.stderr, result.output
    store = _store(data_dir)
    assert store.deadletter_size() == 3 and store.outbox_size() == 0
    store.close()


def test_durations() -> None:
    assert parse_duration("90") == 90 and parse_duration("90s") == 90 and parse_duration("15m") == 900
    assert parse_duration("1h30m") == 5400 and parse_duration("7d") == 7 * 86400 and parse_duration("1w") == 604800


def test_replay_beside_a_running_serve_after_a_fix_downstream(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    with OtlpReceiver(fail=refuse_trace(POISON)) as downstream:
        processor = running(config(tmp_path, downstream=f"grpc://{downstream.endpoint}", export_min_backoff=0.01))
        processor.store.outbox_add(trace_request(POISON, spans=3), 3)
        processor.store.outbox_add(trace_request(trace_id(1)), 1)
        processor.exporter.wake()  # type: ignore[union-attr]
        wait_for(lambda: processor.store.deadletter_size() == 1 and downstream.span_count() == 1)
        assert {code for code, _ in downstream.refused} == {grpc.StatusCode.INVALID_ARGUMENT}
        downstream.fail = None  # fixed downstream
        listed = cli("list", "--data-dir", str(tmp_path / "data"))
        assert POISON.hex() in listed.stdout
        dead_id = listed.stdout.splitlines()[1].split()[0]
        replayed = cli("replay", dead_id, "--data-dir", str(tmp_path / "data"))
        assert replayed.exit_code == 0, replayed.output
        wait_for(lambda: downstream.span_count() == 4)
    assert downstream.trace_ids().count(POISON) == 3
    assert processor.store.deadletter_size() == 0 and processor.store.outbox_size() == 0
