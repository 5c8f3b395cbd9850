"""Reading a JSON or JSON Lines file, with errors that point at the real place of the problem.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "runs.jsonl")
>>> with open(path, "w") as f:
...     _ = f.write('{"a": 1}\\n\\n{oops\\n{"b": 2}\\n')
>>> data = read_json_or_jsonl(path)
>>> [(line, value if isinstance(value, dict) else value.field) for line, value in data.numbered()]
[(1, {'a': 1}), (3, 'line 3'), (4, {'b': 2})]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError


class JsonLines(list[Any]):
    """The values of a JSON Lines file, one per non-blank line, told apart from a JSON array.

    A line that is not JSON is kept, in its place, as an :class:`InputError` naming it (``line N``), so that
    one corrupt line costs only itself. ``lines`` holds each value's line number in the file.
    """

    def __init__(self, values: list[Any], lines: list[int]) -> None:
        super().__init__(values)
        self.lines = lines

    def numbered(self) -> Iterator[tuple[int, Any]]:
        return zip(self.lines, self, strict=True)


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None


def read_json_or_jsonl(path: str | Path) -> Any:
    """The file's JSON value; a JSON Lines file comes back as a :class:`JsonLines`.

    A file is read as JSON Lines when its name ends in ``.jsonl``, or when it is not one JSON value but its first
    non-blank line is: a broken pretty-printed JSON file is reported where its JSON breaks, not as a first line
    that is "not JSON".
    """
    file = str(path)
    text = read_text(path)
    if not file.endswith(".jsonl"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            first = next((line for line in text.splitlines() if line.strip()), "")
            if not _is_json(first):
                raise InputError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file=file) from None
    values: list[Any] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as exc:
            values.append(InputError(f"not JSON: {exc.msg} at column {exc.colno}", file=file, field=f"line {number}"))
        lines.append(number)
    return JsonLines(values, lines)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True
