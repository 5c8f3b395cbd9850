"""OTLP JSON trace files (the OTLP file exporter's encoding: one export request per line) as runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..errors import InputError
from ..otlp_json import request_from_json
from .jsonfile import JsonLines, file_label, read_json_or_jsonl


def read_otlp_json(path: str | Path) -> Iterator[ExportTraceServiceRequest]:
    """Every export request in an OTLP JSON file: JSON Lines, or a single request, or a JSON list of them.

    The first request that cannot be read raises :class:`InputError`; :func:`otlp_json_items` reports it and
    goes on.
    """
    for item in otlp_json_items(path):
        if isinstance(item, InputError):
            raise item
        yield item


def otlp_json_items(path: str | Path) -> Iterator[ExportTraceServiceRequest | InputError]:
    """Every export request in an OTLP JSON file, or an :class:`InputError` for one that cannot be read (a
    corrupt line of a JSON Lines file costs only that line)."""
    yield from otlp_items_from_data(read_json_or_jsonl(path), file_label(path))


def otlp_items_from_data(data: Any, file: str) -> Iterator[ExportTraceServiceRequest | InputError]:
    """:func:`otlp_json_items` on a file already decoded (``read_json_or_jsonl``), so that it is read once."""
    if isinstance(data, JsonLines):
        for number, value in data.numbered():
            yield value if isinstance(value, InputError) else _request(value, file, f"line {number}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield _request(value, file, f"[{i}]")
    else:
        yield _request(data, file, None)


def _request(value: Any, file: str, where: str | None) -> ExportTraceServiceRequest | InputError:
    if not isinstance(value, dict):
        return InputError("not an OTLP trace export request: not a JSON object", file=file, field=where)
    try:
        return request_from_json(value)
    except ValueError as exc:
        return InputError(f"not an OTLP trace export request: {exc}", file=file, field=where)
