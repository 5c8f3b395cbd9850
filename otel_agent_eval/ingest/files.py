"""Runs from any file the project reads: recorded runs (τ-bench, τ², OpenAI messages) or OTLP JSON traces."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from ..model import RunSource, ToolDefinition
from .otlp import read_otlp_json
from .recorded import Format, LoadedItem, detect_format, load_runs, read_json_or_jsonl
from .spans import runs_from_request


def file_format(path: str | Path) -> Format:
    return detect_format(read_json_or_jsonl(Path(path)), file=str(path))


def read_runs(
    path: str | Path, *, format: Format | None = None, tools: Sequence[ToolDefinition] = ()
) -> Iterator[LoadedItem]:
    """Every run in a file, in order: an ``AgentRun``, or an ``InputError`` for a run that cannot be read.

    Runs read from OTLP JSON traces keep the source their spans name (when they were imported from a
    recorded run); otherwise their source is this file, their position in it and their trace id.
    """
    fmt = format or file_format(path)
    if fmt != "otlp-json":
        yield from load_runs(path, format=fmt, tools=tools)
        return
    position = 0
    for request in read_otlp_json(path):
        for run in runs_from_request(request):
            if run.source is None:
                run = replace(run, source=RunSource(file=str(path), index=position, id=run.trace_id))
            position += 1
            yield run.with_tools(tuple(tools))
