"""End to end into a real trace store: agent runs -> processor -> Arize Phoenix on loopback; the labels arrive.

Phoenix (PyPI ``arize-phoenix``, the ``phoenix`` extra) runs as a subprocess with a temporary working directory
(its SQLite database goes there), its HTTP server on 127.0.0.1 and free ports. It takes OTLP over gRPC
(``PHOENIX_GRPC_PORT``; Phoenix binds that one on all interfaces, it has no setting for the address) and over
HTTP (``/v1/traces`` on ``PHOENIX_PORT``), and gives spans back with their attributes and events from its REST
API, ``GET /v1/projects/{project}/spans``. Spans land in the project named by the ``x-project-name`` HTTP header,
else by the ``openinference.project.name`` resource attribute, else in ``default``.

Phoenix takes about 20 to 30 seconds to start (most of it importing its dependencies), so one server serves
the whole module.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_processor import config, free_port, send_runs, wait_for

from otel_agent_eval.processor import Processor

STARTUP_TIMEOUT = 180.0  # seconds; Phoenix needs ~25 s on a 2-core machine
ARRIVAL_TIMEOUT = 60.0


@dataclass
class Phoenix:
    process: subprocess.Popen[bytes]
    port: int
    grpc_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span of a project ([] while the project does not exist yet), following the pages."""
        spans: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            url = f"{self.url}/v1/projects/{urllib.parse.quote(project)}/spans?{urllib.parse.urlencode(query)}"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    body = json.load(response)
            except urllib.error.HTTPError as error:
                if error.code == 404:  # the project is created with its first span
                    return []
                raise
            spans += body["data"]
            cursor = body.get("next_cursor")
            if not cursor:
                return spans


def _phoenix_version() -> str:
    try:
        return importlib.metadata.version("arize-phoenix")
    except importlib.metadata.PackageNotFoundError:
        pass
    pytest.fail(
        "Arize Phoenix is not installed in this environment (PyPI arize-phoenix, the 'phoenix' extra, part of "
        "'dev'): run scripts/setup.sh",
        pytrace=False,
    )


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ready(phoenix: Phoenix) -> bool:
    try:
        with urllib.request.urlopen(f"{phoenix.url}/readyz", timeout=2) as response:
            http_ready = response.status == 200
    except (urllib.error.URLError, OSError):
        return False
    return http_ready and _listening(phoenix.grpc_port)


def _start_phoenix(workdir: Path) -> Phoenix:
    workdir.mkdir(parents=True, exist_ok=True)
    # Nothing from the caller's Phoenix or OpenTelemetry settings (a Postgres URL, auth, TLS, a root path...).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    port, grpc_port = free_port(), free_port()
    env.update(
        PHOENIX_WORKING_DIR=str(workdir),  # SQLite database: workdir/phoenix.db
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",  # no requests to the internet of its own
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_DISABLE_AGENT_ASSISTANT="true",
        PHOENIX_LOG_MIGRATIONS="false",
        TMPDIR=str(workdir),  # its pid file goes to $TMPDIR/.arize-phoenix/pids
    )
    log = workdir / "phoenix.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "phoenix.server.main", "serve"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Phoenix(process, port, grpc_port, log)


def _stop_phoenix(phoenix: Phoenix, grace: float = 15.0) -> None:
    if phoenix.process.poll() is not None:
        return
    phoenix.process.send_signal(signal.SIGTERM)
    try:
        phoenix.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        phoenix.process.kill()
        phoenix.process.wait()


def _wait_ready(phoenix: Phoenix, version: str) -> bool:
    """True once Phoenix answers; False if it exited first; fails the test after STARTUP_TIMEOUT."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _ready(phoenix):
        if phoenix.process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            _stop_phoenix(phoenix)
            pytest.fail(
                f"Phoenix {version} not ready on {phoenix.url} after {STARTUP_TIMEOUT:.0f} s; its log ends:\n"
                + phoenix.log_tail(),
                pytrace=False,
            )
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    version = _phoenix_version()
    server = _start_phoenix(tmp_path_factory.mktemp("phoenix"))
    try:
        if not _wait_ready(server, version) and "address already in use" in server.log_tail(200).lower():
            server = _start_phoenix(tmp_path_factory.mktemp("phoenix"))  # a port was taken before Phoenix bound it
            _wait_ready(server, version)
        if server.process.poll() is not None:
            pytest.fail(
                f"Phoenix {version} exited with status {server.process.returncode} while starting; its log ends:\n"
                + server.log_tail(),
                pytrace=False,
            )
        yield server
    finally:  # also on Ctrl-C while it starts
        _stop_phoenix(server)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_labels_arrive_in_phoenix(tmp_path: Path, phoenix: Phoenix, transport: str) -> None:
    if transport == "grpc":
        project = "default"  # our spans carry no openinference.project.name
        settings: dict[str, Any] = {"downstream": f"grpc://127.0.0.1:{phoenix.grpc_port}"}
    else:
        project = "agent-eval-http"
        settings = {
            "downstream": f"{phoenix.url}/v1/traces",
            "downstream_headers": {"x-project-name": project},
        }
    processor = Processor(config(tmp_path, **settings))
    processor.start()
    try:
        sent = send_runs(processor.grpc.endpoint)  # type: ignore[union-attr]
        try:
            wait_for(lambda: len(phoenix.spans(project)) >= sent, timeout=ARRIVAL_TIMEOUT)
        except AssertionError:
            got = len(phoenix.spans(project))
            pytest.fail(
                f"{got} of {sent} spans in Phoenix project {project!r} after {ARRIVAL_TIMEOUT:.0f} s "
                f"(processor outbox: {processor.store.outbox_size()} requests); Phoenix's log ends:\n"
                + phoenix.log_tail(),
                pytrace=False,
            )
    finally:
        processor.stop()
    spans = phoenix.spans(project)

    assert len(spans) == sent, f"{len(spans)} spans in Phoenix, {sent} sent"
    assert len({s["context"]["span_id"] for s in spans}) == sent
    roots = [s for s in spans if s["parent_id"] is None]
    assert len(roots) == 3 and len({s["context"]["trace_id"] for s in spans}) == 3
    for root in roots:
        attributes = root["attributes"]
        assert root["name"] == "invoke_agent shop"
        assert attributes["agent_eval.trace.outcome"] == "terminal"
        assert attributes["agent_eval.trace.terminal_failures"] >= 1
        assert 0 < attributes["agent_eval.trace.failure_score"] <= 1

    labelled = [s for s in spans if s["attributes"].get("agent_eval.failure.mode") == "wrong_arguments"]
    assert len(labelled) == 3 and all(s["name"] == "chat m" for s in labelled)
    assert {s["context"]["trace_id"] for s in labelled} == {r["context"]["trace_id"] for r in roots}
    for span in labelled:
        attributes = span["attributes"]
        assert attributes["agent_eval.failure.outcome"] == "terminal"
        assert attributes["agent_eval.failure.category"] == "tool"
        assert "reason" in attributes["agent_eval.failure.critique"]
        [event] = [e for e in span["events"] if e["name"] == "gen_ai.evaluation.result"]
        assert event["attributes"]["gen_ai.evaluation.name"] == "wrong_arguments"
        assert event["attributes"]["gen_ai.evaluation.score.label"] == "fail"
        assert event["attributes"]["gen_ai.evaluation.explanation"] == attributes["agent_eval.failure.critique"]
    unlabelled = [s for s in spans if s not in labelled]
    assert not any("agent_eval.failure.mode" in s["attributes"] for s in unlabelled)
