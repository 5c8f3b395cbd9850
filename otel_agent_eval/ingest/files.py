"""Runs from any file the project reads: recorded runs (τ-bench, τ², OpenAI messages) or OTLP JSON traces."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ..model import RunSource, ToolDefinition
from .jsonfile import file_label, read_json_or_jsonl
from .otlp import otlp_items_from_data
from .recorded import Format, LoadedItem, detect_format, runs_from_data
from .span_record import SpanRecord, records_from_request
from .spans import runs_from_records


def file_format(path: str | Path) -> Format:
    return detect_format(read_json_or_jsonl(Path(path)), file=file_label(path))


def read_runs(
    path: str | Path, *, format: Format | None = None, tools: Sequence[ToolDefinition] = ()
) -> Iterator[LoadedItem]:
    """Every run in a file, in order: an ``AgentRun``, or an ``InputError`` for a run that cannot be read.

    A line of an OTLP JSON Lines file that cannot be read is an ``InputError`` too. Runs read from OTLP JSON
    traces keep the source their spans name (when they were imported from a recorded run); otherwise their
    source is this file, their position in it and their trace id.
    """
    data = read_json_or_jsonl(Path(path))  # read and decoded once, whatever the format turns out to be
    file = file_label(path)
    fmt = format or detect_format(data, file=file)
    if fmt != "otlp-json":
        yield from runs_from_data(data, file, format=fmt, tools=tools)
        return
    # A trace may be spread over several export requests (lines, as batch exporters write them): the spans
    # of the whole file are read first and the runs assembled from all of them.
    records: list[SpanRecord] = []
    for request in otlp_items_from_data(data, file):
        if isinstance(request, InputError):  # one line that cannot be read; the rest of the file still counts
            yield request
            continue
        records.extend(records_from_request(request, lean=True))
    for position, run in enumerate(runs_from_records(records)):
        if run.source is None:
            run = replace(run, source=RunSource(file=file, index=position, id=run.trace_id))
        yield run.with_tools(tuple(tools))
