"""Shared fixtures: the real recorded runs in ../shared/data, and an in-memory SDK pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def _built(script: str, what: str) -> Path:
    """The binary a build script prints last, built once per machine into the cache outside the repo (minutes
    when cold). Without Go and without a cached build the test skips; a failing build fails it."""
    path = ROOT / "scripts" / script
    if shutil.which(os.environ.get("GO", "go")) is None:
        cached = subprocess.run(["bash", str(path), "--path-only"], capture_output=True)
        if cached.returncode != 0:
            pytest.skip(f"{what} is not built and Go is not installed to build it (scripts/{script})")
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"building {what} failed (scripts/{script}):\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def collector_binary() -> Path:
    """The project's OpenTelemetry Collector (scripts/build-collector.sh, the Collector Builder)."""
    return _built("build-collector.sh", "the project's Collector")


@pytest.fixture(scope="session")
def jaeger_binary() -> Path:
    """Jaeger v2 from the Go module registry (scripts/build-jaeger.sh)."""
    return _built("build-jaeger.sh", "Jaeger")
