"""Rows of a label CSV by column name, with the line numbers that error messages need.

Every malformed file raises `DataError` naming the file, the line and the problem; nothing is
guessed. A trailing comma on the header and the rows (NIH's Data_Entry_2017.csv has one) only
adds an unnamed empty column, which is accepted.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence

from cxrfast.errors import DataError

_LABELS = {"1.0": 1.0, "0.0": 0.0, "-1.0": -1.0, "1": 1.0, "0": 0.0, "-1": -1.0, "": math.nan}


def _text_lines(f, path) -> Iterator[str]:
    """The lines of a binary file as UTF-8 text (a byte-order mark allowed), failing at the right line."""
    for number, raw in enumerate(f, 1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: line {number}: not UTF-8 text ({e.reason})") from None


def read_rows(path: str | os.PathLike, required: Sequence[str], optional: Sequence[str] = ()
              ) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: stripped text}) for each data row of `path`, holding the `required`
    columns and those of `optional` that the header has, in the header's order; blank lines are
    not rows."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot be opened ({e.strerror})") from e
    with f:
        reader = csv.reader(_text_lines(f, path))
        try:
            header = [name.strip() for name in next(reader, [])]
            while header and not header[-1]:
                header.pop()
            missing = [name for name in required if name not in header]
            if missing:
                raise DataError(f"{path}: line 1: missing column(s) {', '.join(map(repr, missing))}; the header has "
                                f"{', '.join(map(repr, header)) or 'nothing'}")
            wanted = set(required) | set(optional)
            where = [(name, i) for i, name in enumerate(header) if name in wanted and header.index(name) == i]
            for row in reader:
                if not row:
                    continue
                if len(row) < len(header) or any(field.strip() for field in row[len(header):]):
                    raise DataError(f"{path}: line {reader.line_num}: {len(row)} fields where the header names "
                                    f"{len(header)}")
                yield reader.line_num, {name: row[i].strip() for name, i in where}
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num}: not readable as CSV ({e})") from e


def parse_label(text: str, path: str | os.PathLike, line: int, column: str) -> float:
    """1, 0, -1 (uncertain) or NaN (blank); CheXpert's labeller writes them as 1.0, 0.0, -1.0."""
    value = _LABELS.get(text)
    if value is None:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value not in (1.0, 0.0, -1.0):
            raise DataError(f"{path}: line {line}: {column} is {text!r}; a label must be 1, 0, -1 or blank")
    return value


def check_new(seen: dict[str, int], key: str, path: str | os.PathLike, line: int, what: str) -> None:
    """Record that `key` appears on `line`, refusing a second appearance."""
    if key in seen:
        raise DataError(f"{path}: line {line}: {what} {key!r} already appears on line {seen[key]}")
    seen[key] = line
