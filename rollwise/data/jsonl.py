"""Strict, streamed JSON Lines: the reader for user data files and prior files.

Python's json module is lenient where training data must not be: it reads NaN and Infinity (an answer
would become the text "nan"), and `str.splitlines` cuts rows at U+2028, U+2029 and U+0085, which JSON
allows raw inside strings. Here rows end at `\\n` only, each line is read with a bound
(MAX_LINE_BYTES), a UTF-8 byte order mark at the start is skipped, and every problem is a DataError
naming the file, the row (1-based line number) and, where it can be found, the column.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

MAX_LINE_BYTES = 64 * 2**20  # one row; a longer line is almost surely not JSONL at all


class DataError(ValueError):
    """A problem with input data, raised at load time with the file, row and column."""


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-empty line, streamed; DataError naming the row for bad lines.

    Rows end at `\\n` only, never at the other line breaks `str.splitlines` knows (U+2028 inside a
    JSON string is legal); a byte order mark at the start is skipped; values go through `parse_json`.
    """
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    with handle:
        for n, raw in enumerate(_bounded_lines(handle, path), start=1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: row {n}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
            row = parse_json(line, f"{path}: row {n}")
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
            yield n, row


def _bounded_lines(handle, path: Path) -> Iterator[bytes]:
    """Lines of a binary handle split at b"\\n", each read with a bound so one huge line cannot exhaust memory."""
    n = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        n += 1
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(f"{path}: row {n}: longer than {MAX_LINE_BYTES} bytes; JSONL holds one object per line")
        yield raw


class _NotJSONNumber(ValueError):
    """NaN, Infinity or a float beyond range: Python's json reads them, strict JSON has no such numbers."""


def _refuse_constant(name: str):
    raise _NotJSONNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJSONNumber(text)
    return value


# One decoder for every row: json.loads with hooks would build a new one per call (a third of the cost).
_STRICT = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_json(text: str, where: str) -> Any:
    """`json.loads` held to strict JSON, every failure a DataError naming `where` (and the column).

    Refused: NaN / Infinity / -Infinity, floats beyond range (1e400), integers over Python's digit
    limit (write long numbers as strings), and nesting deeper than the parser's recursion limit.
    """
    try:
        return _STRICT.decode(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}, character {exc.pos + 1}); "
                        "is the file truncated?") from None
    except _NotJSONNumber as exc:
        raise DataError(f"{where}{_column_of_bad_number(text)}: {short_repr(str(exc), 40)} is not a JSON number; "
                        "write a missing value as null or the text as a string") from None
    except RecursionError:
        raise DataError(f"{where}: nested too deeply for the JSON parser; flatten the row") from None
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        if "Exceeds the limit" not in str(exc):
            raise
        raise DataError(f"{where}{_column_of_bad_number(text)}: an integer with more than "
                        f"{sys.get_int_max_str_digits()} digits (Python's limit); write it as a JSON string") from None


def _column_of_bad_number(text: str) -> str:
    """On the error path only: ": column 'x'" for the top-level key holding the first refused number."""
    bad = object()
    limit = sys.get_int_max_str_digits() or math.inf

    def as_int(s):
        return bad if len(s.lstrip("-")) > limit else int(s)

    def as_float(s):
        return bad if not math.isfinite(float(s)) else float(s)

    try:
        row = json.loads(text, parse_constant=lambda _: bad, parse_int=as_int, parse_float=as_float)
    except (ValueError, RecursionError):
        return ""
    for key, value in (row.items() if isinstance(row, dict) else ()):
        stack = [value]
        while stack:  # iterative: the value may be nested hundreds of levels
            v = stack.pop()
            if v is bad:
                return f": column {key!r}"
            stack.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())
    return ""


def short_repr(value: Any, limit: int = 60) -> str:
    """repr(value) cut to `limit` characters, so that an error message stays short whatever the data."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond the digit limit cannot even be printed
        return "an integer too long to print"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
