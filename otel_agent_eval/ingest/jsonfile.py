"""Reading a JSON or JSON Lines file, with errors that point at the real place of the problem.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "runs.jsonl")
>>> with open(path, "w") as f:
...     _ = f.write('{"a": 1}\\n\\n{oops\\n{"b": 2}\\n')
>>> data = read_json_or_jsonl(path)
>>> [(line, value if isinstance(value, dict) else value.field) for line, value in data.numbered()]
[(1, {'a': 1}), (3, 'line 3'), (4, {'b': 2})]

All JSON the project reads goes through :func:`loads`: ``json.loads`` made total on any text. JSON nested
deeper than :data:`MAX_DEPTH` levels is refused (a ``json.JSONDecodeError`` at the place it goes too deep,
never a ``RecursionError``), and a lone surrogate (``"\\ud800"``, which no UTF-8 encoder accepts) is read as
U+FFFD, the replacement character, in keys and values alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError

MAX_DEPTH = 200
"""Arrays and objects nested deeper than this are refused: the readers and detectors after the decoder recurse
over what it returns. No agent's data nests so deep, and no OTLP JSON request that protobuf would take does:
its parser refuses messages nested past 100 levels, and a level of attribute value nesting is 2 or 3 message
levels in 3 or 4 JSON levels."""

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')  # a string, or a bracket
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # json.loads pairs up the escapes of a real pair
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    r"""``json.loads`` that raises nothing but ``json.JSONDecodeError`` (a ``ValueError``), whatever the text:
    text nested deeper than ``max_depth`` is refused where it goes too deep, lone surrogates are U+FFFD.

    >>> loads(r'{"k\ud800": ["\udfff", "\ud83d\ude00"]}') == {"k\ufffd": ["\ufffd", "\U0001f600"]}
    True
    >>> loads("[" * 100_000 + "]" * 100_000)
    Traceback (most recent call last):
    ...
    json.decoder.JSONDecodeError: nested deeper than 200 levels: line 1 column 201 (char 200)
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        _refuse_depth(text, max_depth)
        raise json.JSONDecodeError(f"nested too deeply for the stack left (limit {max_depth})", text, 0) from None
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise json.JSONDecodeError(str(exc), text, 0) from None
    # Fewer brackets than the limit cannot nest past it; else the decoded containers are walked (at a tenth of
    # the cost of scanning the text), and the text scanned for the place only when they do nest too deep.
    if text.count("[") + text.count("{") > max_depth and _too_deep(value, max_depth):
        _refuse_depth(text, max_depth)
    if _SURROGATE_ESCAPE.search(text) or (not text.isascii() and not _encodable(text)):
        value = _without_surrogates(value)
    return value


def _too_deep(value: Any, max_depth: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return False


def _refuse_depth(text: str, max_depth: int) -> None:
    """Raise ``json.JSONDecodeError`` at the place where ``text`` nests deeper than ``max_depth``."""
    depth = 0
    for match in _TOKEN.finditer(text):
        first = match.group()[0]  # a bracket, or the quote that opens a string
        if first in "[{":
            depth += 1
            if depth > max_depth:
                raise json.JSONDecodeError(f"nested deeper than {max_depth} levels", text, match.start())
        elif first in "]}":
            depth -= 1


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, in text that did not come from UTF-8
        return False
    return True


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_surrogates(key): _without_surrogates(item) for key, item in value.items()}
    return value


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


def file_label(path: str | Path) -> str:
    """The file's name as it is reported and kept in the runs' sources: a name that is not UTF-8 (which Python
    holds with surrogates) with U+FFFD for the bytes that are not, so that it can be written.

    >>> file_label(b"runs-\\xff.json".decode("utf-8", "surrogateescape"))
    'runs-\ufffd.json'
    """
    return _SURROGATE.sub("\ufffd", str(path))


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file_label(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=file_label(path)) from None


def read_json_or_jsonl(path: str | Path) -> Any:
    """The file's JSON value; a JSON Lines file comes back as a :class:`JsonLines`.

    A file is read as JSON Lines when its name ends in ``.jsonl``, or when it is not one JSON value but its first
    non-blank line is: a broken pretty-printed JSON file is reported where its JSON breaks, not as a first line
    that is "not JSON".
    """
    file = file_label(path)
    text = read_text(path)
    if not file.endswith(".jsonl"):
        try:
            return loads(text)
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
            values.append(loads(line))
        except json.JSONDecodeError as exc:
            values.append(InputError(f"not JSON: {exc.msg} at column {exc.colno}", file=file, field=f"line {number}"))
        lines.append(number)
    return JsonLines(values, lines)


def _is_json(text: str) -> bool:
    try:
        loads(text)
    except json.JSONDecodeError:
        return False
    return True
