"""OTLP JSON trace files (the OTLP file exporter's encoding: one export request per line) as runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..errors import InputError
from ..otlp_json import request_from_json


def read_otlp_json(path: str | Path) -> Iterator[ExportTraceServiceRequest]:
    """Every export request in an OTLP JSON file: JSON Lines, or a single request, or a JSON list of them."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # JSON Lines: one request per line
    if isinstance(whole, list):
        for i, item in enumerate(whole):
            yield _request(item, str(path), f"[{i}]")
        return
    if isinstance(whole, dict):
        yield _request(whole, str(path), "")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield _request(line, str(path), f"line {number}")


def _request(value: str | dict[str, object], file: str, where: str) -> ExportTraceServiceRequest:
    try:
        return request_from_json(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg} at column {exc.colno}", file=file, field=where) from None
    except ValueError as exc:
        raise InputError(f"not an OTLP trace export request: {exc}", file=file, field=where) from None
