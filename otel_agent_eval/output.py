"""Writing results: whole or not at all, and errors about the output named clearly."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .evaluate.findings import Evaluation


class BadInput(click.ClickException):
    """Bad input or a bad output path: the message names the file (and run, and field); exit status 2."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


# Control characters a terminal acts on (C0 but tab and newline, DEL, C1), except our own colours (SGR).
_CONTROL = re.compile(r"\x1b\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    r"""Text bound for a terminal, with what came from spans unable to move the cursor, clear the screen, set the
    window title or overwrite a line: every control character but tab and newline becomes ``?``. Colour codes
    (SGR) are kept: the text reports colour their tables.

    >>> terminal_safe("agent\x1b]0;pwned\x07\rOVER \x1b[31mred\x1b[0m")
    'agent?]0;pwned??OVER \x1b[31mred\x1b[0m'
    """
    return _CONTROL.sub(lambda m: m.group() if m.group().startswith("\x1b[") else "?", text)


def write_atomically(path: str | Path, lines: Iterable[str]) -> int:
    """Write ``lines`` (each with a newline) to ``path``, or to stdout for ``-``; return how many.

    A file is written whole or not at all: a temporary file beside it, then ``os.replace``. For stdout the
    lines are collected first, so an error half-way (a bad input file) prints nothing.
    """
    if str(path) == "-":
        collected = list(lines)
        sys.stdout.write("".join(line + "\n" for line in collected))
        sys.stdout.flush()
        return len(collected)
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise BadInput(f"{path}: cannot write there: {exc.strerror or exc}") from None
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
                count += 1
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the output is an ordinary file
        os.replace(tmp, target)
    except IsADirectoryError:
        Path(tmp).unlink(missing_ok=True)
        raise BadInput(f"{path}: is a directory") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def result_record(evaluation: Evaluation) -> dict[str, Any]:
    """One line of ``results.jsonl``: the evaluation, and the agent it judged (``agent``: ``gen_ai.agent.name``, or
    the recorded run's implementation; null when unknown), so that ``report`` can break the runs down by agent."""
    record = evaluation.to_dict()
    # after trace_id, beside what identifies the run; a reader of older files finds no "agent" and takes None
    ordered = {key: record[key] for key in ("source", "trace_id")}
    ordered["agent"] = evaluation.run.agent_name
    ordered.update(record)
    return ordered
