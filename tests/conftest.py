"""Shared fixtures: the real recorded runs in ../shared/data, and an in-memory SDK pipeline."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.processor import Processor, ServeConfig

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("AGENT_EVAL_DATA", ROOT.parent / "shared" / "data"))
TAU_BENCH = DATA / "tau-bench" / "airline-gpt-4o-tasks-00-24.json"
TAU2 = DATA / "tau2" / "retail-gpt-4.1.json"
TAU2_FT = DATA / "tau2" / "retail-gpt-4.1-finetuned.json"
RECORDED_FILES = [TAU_BENCH, TAU2, TAU2_FT]
EXPECTED_RUNS = {TAU_BENCH: 100, TAU2: 40, TAU2_FT: 40}


@pytest.fixture(scope="session", autouse=True)
def _data_present() -> None:
    if not TAU_BENCH.exists():
        pytest.fail(f"the development data is missing: {DATA} (set AGENT_EVAL_DATA to its folder)")


@pytest.fixture
def memory_spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def running() -> Iterator[Callable[..., Processor]]:
    """Start processors (``running(config, engine=None)``); each is stopped at the end of the test."""
    started: list[Processor] = []

    def start(cfg: ServeConfig, engine: Engine | None = None) -> Processor:
        processor = Processor(cfg, engine)
        processor.start()
        started.append(processor)
        return processor

    yield start
    for processor in started:
        if processor._ready:
            processor.stop()
