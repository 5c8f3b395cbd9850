"""The README's commands run as written, and every file it names exists.

Every ``sh`` block of README.md is joined, in order, into one bash script (``set -euo pipefail``) and run from a
scratch directory laid out as a fresh clone: the repository's top-level entries linked in, and the development
data at ``../shared/data`` as the README's paths expect. The only change to the text is the port numbers, moved
to free ones so that the test never meets another server on 4317. Two commands run elsewhere (the whole test
suite, and the examples' scripts in tests/test_examples.py); the test checks that they still do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path

from conftest import DATA, ROOT
from test_processor import free_port

README = ROOT / "README.md"

# Commands of the README run by another test, and where (checked, so that the exemption cannot go stale).
RUN_ELSEWHERE = {
    "bash scripts/test.sh": ROOT / "scripts" / "test.sh",  # the test suite itself: CI's `.ci/run`
    "bash scripts/run.sh": ROOT / "tests" / "test_examples.py",
    "python examples/unmodified/run.py": ROOT / "tests" / "test_examples.py",
}
DEFAULT_PORTS = ("4317", "4318", "9464")  # serve's OTLP/gRPC, OTLP/HTTP and metrics defaults


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


def _command(line: str) -> str:
    return line.split("#", 1)[0].strip()


def readme_script() -> tuple[str, set[str]]:
    """The README's commands as one script, and the commands left out of it because another test runs them."""
    kept: list[str] = []
    skipped: set[str] = set()
    for block in shell_blocks(README.read_text()):
        for line in block.splitlines():
            if _command(line) in RUN_ELSEWHERE:
                skipped.add(_command(line))
            else:
                kept.append(line)
    return "\n".join(kept), skipped


def test_commands_run_elsewhere_are_still_run_there() -> None:
    _, skipped = readme_script()
    assert skipped == set(RUN_ELSEWHERE), "a command exempted here is no longer in the README"
    for command, where in RUN_ELSEWHERE.items():
        if where.name == "test.sh":
            assert (ROOT / ".ci" / "run").read_text().count("scripts/test.sh"), "CI no longer runs scripts/test.sh"
        else:
            words = command.split()[1:]  # "bash scripts/run.sh" -> the script's path as the test names it
            assert any(w in where.read_text() for w in words), (command, where)


def _scratch_clone(tmp_path: Path) -> Path:
    """A directory that looks like a fresh clone after the setup command, beside ``shared/data``."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA)
    clone = tmp_path / "clone"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "out", ".agent-eval"}:
            (clone / entry.name).symlink_to(entry)
    return clone


def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    # Else the README's `bash scripts/setup.sh` would reinstall the package, editable, from the scratch clone.
    assert (ROOT / ".venv" / f".installed-{stamp}").exists(), "run `bash scripts/setup.sh` first"
    script, _ = readme_script()
    moved = {port: str(free_port()) for port in DEFAULT_PORTS}
    for port, free in moved.items():
        script = re.sub(rf"(?<=:){port}\b", free, script)
    assert "otel-agent-eval serve &" in script, "the README no longer starts serve in the background"
    script = script.replace(
        "otel-agent-eval serve &",
        "otel-agent-eval serve --grpc-endpoint 127.0.0.1:{} --http-endpoint 127.0.0.1:{} "
        "--metrics-endpoint 127.0.0.1:{} &".format(*moved.values()),
    )
    clone = _scratch_clone(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "AGENT_EVAL_DATA"}}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    # In a session of its own, its output in files: when a command fails after `serve &`, bash ends, and the
    # background serve, killed with the whole group, holds no pipe the test would wait on.
    out_file, err_file = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_file, "w") as stdout, open(err_file, "w") as stderr:
        process = subprocess.Popen(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=clone,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            process.wait(timeout=900)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    out, err = out_file.read_text(), err_file.read_text()
    assert process.returncode == 0, f"stdout:\n{out[-3000:]}\nstderr:\n{err[-5000:]}"
    # What each command is said to produce, produced: traces, span trees, labelled traces in the store, a
    # terminal one shown with its failure marked, results and the report.
    assert (clone / "traces.json").stat().st_size > 0 and "execute_tool" in out
    assert "terminal" in out and "outcome terminal" in out
    assert re.search(r"\[terminal [a-z_]+\]", out), "show printed no failure marker"
    assert "Failure modes" in out
    for name in ("results.jsonl", "ref.jsonl", "from-traces.jsonl", "report.html"):
        assert (clone / name).stat().st_size > 0, name


# Paths the README names: markdown links, and code spans that start with one of the repository's directories.
_TOP = r"(?:otel_agent_eval|examples|bench|scripts|tests|docs|alerts|collector-config|dashboards|proto)"
_CODE_PATH = re.compile(rf"`({_TOP}/[\w./-]*)`")
_LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")


def test_every_file_the_readme_names_exists() -> None:
    text = README.read_text()
    named = set(_CODE_PATH.findall(text)) | set(_LINK.findall(text))
    assert len(named) > 10, named  # the patterns still find the README's paths
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"README.md names files that do not exist: {missing}"
