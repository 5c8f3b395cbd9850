"""`serve` on its own machine: a private data directory (0700, files 0600), one processor per data directory
(a second is refused naming the first's PID), one per port (no SO_REUSEPORT: a busy port is refused naming the
address), and addresses checked before anything starts."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from otel_agent_eval.cli import main
from otel_agent_eval.processor import Processor, ServeConfig
from otel_agent_eval.processor.security import StartupError


def config(data_dir: Path, **overrides: Any) -> ServeConfig:
    values: dict[str, Any] = {
        "grpc_endpoint": "127.0.0.1:0",
        "http_endpoint": "127.0.0.1:0",
        "metrics_endpoint": None,
        "data_dir": data_dir,
        "quiet_period": 0.2,
        "drain_seconds": 1.0,
    }
    values.update(overrides)
    return ServeConfig.of(**values)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def serve(*args: str) -> Any:
    return CliRunner().invoke(main, ["serve", *args])


# --- the data directory ----------------------------------------------------------------------------------------


def test_a_new_data_directory_and_its_files_are_private(tmp_path: Path, running: Callable[..., Processor]) -> None:
    data = tmp_path / "new" / "data"
    processor = running(config(data))
    processor.store.outbox_add(b"x" * 100, 1)  # the WAL and shared-memory files exist once it is written to
    assert mode(data) == 0o700
    names = sorted(p.name for p in data.iterdir())
    assert {"agent-eval.sqlite", "agent-eval.sqlite-wal", "agent-eval.sqlite-shm", "agent-eval.lock"} <= set(names)
    assert {name: mode(data / name) for name in names} == dict.fromkeys(names, 0o600)


def test_an_own_directory_open_to_others_is_tightened(
    tmp_path: Path, running: Callable[..., Processor], caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "agent-eval.sqlite").touch()
    os.chmod(data / "agent-eval.sqlite", 0o644)
    with caplog.at_level(logging.WARNING, logger="otel_agent_eval.processor.security"):
        running(config(data))
    assert mode(data) == 0o700 and mode(data / "agent-eval.sqlite") == 0o600
    assert "tightened to 0700" in caplog.text and "was mode 0644: tightened to 0600" in caplog.text


def test_a_shared_directory_is_left_alone_but_the_files_are_private(
    tmp_path: Path, running: Callable[..., Processor], caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    (shared / "notes.txt").write_text("someone else's")
    with caplog.at_level(logging.WARNING, logger="otel_agent_eval.processor.security"):
        running(config(shared))
    assert mode(shared) == 0o755  # not ours to change
    assert "holds other files: left as it is" in caplog.text
    assert mode(shared / "agent-eval.sqlite") == 0o600 and mode(shared / "agent-eval.lock") == 0o600


def test_serve_writes_with_a_private_umask_and_gives_the_old_one_back(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        result = serve("--data-dir", str(tmp_path / "d"), "--grpc-endpoint", "x:abc")
        assert result.exit_code == 2
        assert os.umask(0o022) == 0o022  # restored
    finally:
        os.umask(before)


# --- one processor per data directory --------------------------------------------------------------------------


def test_a_second_processor_on_the_same_directory_is_refused(tmp_path: Path, running: Callable[..., Processor]) -> None:
    data = tmp_path / "data"
    first = running(config(data))
    with pytest.raises(StartupError, match=rf"is in use by another otel-agent-eval serve \(pid {os.getpid()},"):
        Processor(config(data))
    first.stop()
    running(config(data)).stop()  # given up on stop: the next one starts


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_a_second_serve_on_the_same_directory_exits_2_naming_the_pid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--grpc-endpoint", "127.0.0.1:0", "--http-endpoint", "", "--metrics-endpoint", ""]
    first = subprocess.Popen(
        [sys.executable, "-m", "otel_agent_eval.cli", "serve", *args], stderr=subprocess.PIPE, text=True
    )
    try:
        lock = data / "agent-eval.lock"
        assert first.stderr is not None
        for line in first.stderr:  # until it serves (and has its signal handlers)
            if line.startswith("otel-agent-eval serve: OTLP/gRPC"):
                break
        assert lock.read_text().strip() == str(first.pid)
        second = serve(*args)
        assert second.exit_code == 2
        assert f"--data-dir {data} is in use by another otel-agent-eval serve (pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert first.returncode == 0
    kill_9 = subprocess.Popen([sys.executable, "-m", "otel_agent_eval.cli", "serve", *args], stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: lock.read_text().strip() == str(kill_9.pid))
    finally:
        kill_9.kill()
        kill_9.wait(timeout=60)
    after = serve(*args[:-6], "--grpc-endpoint", "x:abc")  # the lock died with it; only the address is wrong
    assert after.exit_code == 2 and "in use" not in after.stderr


# --- one processor per port ------------------------------------------------------------------------------------


def test_a_busy_grpc_port_exits_2_naming_the_address(tmp_path: Path, running: Callable[..., Processor]) -> None:
    first = running(config(tmp_path / "first"))
    port = first.grpc.port  # type: ignore[union-attr]
    result = serve(
        "--data-dir", str(tmp_path / "second"), "--grpc-endpoint", f"127.0.0.1:{port}", "--http-endpoint", "",
        "--metrics-endpoint", "",
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"cannot listen for OTLP/gRPC on 127.0.0.1:{port}: Address already in use" in result.stderr


@pytest.mark.parametrize("flag", ["--http-endpoint", "--metrics-endpoint"])
def test_a_busy_http_port_exits_2_naming_the_address(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = {"--grpc-endpoint": "", "--http-endpoint": "", "--metrics-endpoint": "", flag: f"127.0.0.1:{port}"}
        result = serve("--data-dir", str(tmp_path / "d"), *[x for kv in args.items() for x in kv])
    assert result.exit_code == 2
    assert f"on 127.0.0.1:{port}: Address already in use" in result.stderr


# --- addresses -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--grpc-endpoint", "localhost:abc", "the port 'abc' is not a number"),
        ("--grpc-endpoint", "127.0.0.1:70000", "the port 70000 is not in 0..65535"),
        ("--grpc-endpoint", "localhost", "expected HOST:PORT"),
        ("--http-endpoint", "127.0.0.1:-1", "the port '-1' is not a number"),
        ("--http-endpoint", "::1:4318", "an IPv6 host goes in brackets"),
        ("--metrics-endpoint", "my host:9464", "'my host' is not a host name or address"),
        ("--metrics-endpoint", "127.0.0.1:", "the port '' is not a number"),
        ("--downstream", "http://collector:abc", "the port 'abc' is not a number"),
        ("--downstream", "grpc://collector:99999", "the port 99999 is not in 1..65535"),
        ("--downstream", "grpc://:4317", "no host"),
    ],
)
def test_bad_addresses_exit_2_before_anything_starts(tmp_path: Path, flag: str, value: str, message: str) -> None:
    data = tmp_path / "d"
    args = {"--grpc-endpoint": "127.0.0.1:0", "--http-endpoint": "", "--metrics-endpoint": "", flag: value}
    result = serve("--data-dir", str(data), *[x for kv in args.items() for x in kv])
    assert result.exit_code == 2
    assert f"{flag} {value!r}: {message}" in result.stderr
    assert "Traceback" not in result.output and not data.exists()


def test_good_addresses_are_taken(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path / "d", grpc_endpoint="localhost:0", http_endpoint="localhost:0"))
    assert processor.grpc is not None and processor.http is not None
