"""``replay`` moves each recorded run so that it ends now, every duration and gap kept (so a trace store's
default search window finds it); ``--keep-timestamps`` sends the recorded times; ``import`` keeps them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import TAU2
from otlp_receiver import OtlpReceiver

from otel_agent_eval.ingest.span_record import SpanRecord, records_from_request
from otel_agent_eval.instrument.recorded import RunSpanWriter

RUNS = 3


def _recorded(tmp_path: Path) -> Path:
    """The first few τ² runs (they carry recorded timestamps), as a file of their own."""
    data = json.loads(TAU2.read_text())
    data["simulations"] = data["simulations"][:RUNS]
    out = tmp_path / "runs.json"
    out.write_text(json.dumps(data))
    return out


def _replay(file: Path, *extra: str) -> list[SpanRecord]:
    with OtlpReceiver() as receiver:
        done = subprocess.run(
            [sys.executable, "-m", "otel_agent_eval.cli", "replay", str(file), "--endpoint", receiver.endpoint, *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return [r for request in receiver.requests for r in records_from_request(request)]


def _by_trace(records: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    out: dict[str, list[SpanRecord]] = {}
    for r in records:
        out.setdefault(r.trace_id, []).append(r)
    return out


def _shape(spans: list[SpanRecord]) -> tuple[str, list[tuple[int, int, int]]]:
    """(the run's source, then per span by step index: duration, start and end relative to the run's end)."""
    end = max(s.end_time_ns for s in spans)
    root = next(s for s in spans if s.parent_span_id is None)
    rows = sorted(
        (int(s.attributes.get("agent_eval.step.index", -1)), s.end_time_ns - s.start_time_ns, end - s.start_time_ns)
        for s in spans
    )
    source = f"{root.attributes.get('agent_eval.source.file')}#{root.attributes.get('agent_eval.source.index')}"
    return source, rows


def _recorded_shapes(file: Path) -> dict[str, list[SpanRecord]]:
    from otel_agent_eval.ingest.recorded import load_runs

    writer = RunSpanWriter()
    records = [SpanRecord.from_readable(s) for run in load_runs(file) for s in writer.spans(run)]
    return _by_trace(records)


def test_replay_ends_each_run_now_keeping_durations_and_gaps(tmp_path: Path) -> None:
    file = _recorded(tmp_path)
    recorded = _recorded_shapes(file)
    before = time.time_ns()
    sent = _by_trace(_replay(file))
    after = time.time_ns()
    assert len(sent) == len(recorded) == RUNS
    for spans in sent.values():
        end = max(s.end_time_ns for s in spans)
        assert before - 1_000_000 <= end <= after + 1_000_000, (before, end, after)  # ends now, not in 2025
    assert sorted(_shape(s) for s in sent.values()) == sorted(_shape(s) for s in recorded.values())
    # The recorded runs are months old: what was moved really moved.
    assert all(max(s.end_time_ns for s in spans) < before - 86_400 * 10**9 for spans in recorded.values())


def test_keep_timestamps_sends_the_recorded_times(tmp_path: Path) -> None:
    file = _recorded(tmp_path)
    recorded = _recorded_shapes(file)
    sent = _by_trace(_replay(file, "--keep-timestamps"))

    def times(groups: dict[str, list[SpanRecord]]) -> list[list[tuple[int, int]]]:
        return sorted(sorted((s.start_time_ns, s.end_time_ns) for s in spans) for spans in groups.values())

    assert times(sent) == times(recorded)


def test_import_keeps_the_recorded_times(tmp_path: Path) -> None:
    from otel_agent_eval.ingest.otlp import read_otlp_json

    file = _recorded(tmp_path)
    out = tmp_path / "traces.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "otel_agent_eval.cli", "import", str(file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    imported = _by_trace([r for request in read_otlp_json(out) for r in records_from_request(request)])
    recorded = _recorded_shapes(file)
    assert sorted(min(s.start_time_ns for s in v) for v in imported.values()) == sorted(
        min(s.start_time_ns for s in v) for v in recorded.values()
    )
