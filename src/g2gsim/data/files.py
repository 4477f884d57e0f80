"""Reading the files of a data folder: damaged files are errors that name the file.

A data file that is missing, cut short (a copy or a download interrupted mid-row), not text,
or garbage would otherwise load as something plausible (a trace with a different mean, an
empty fit table, a parser error without a file name). Every reader here raises
:class:`DamagedDataError` (a ValueError) naming the file and what is wrong instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DamagedDataError", "read_csv_file", "read_json_file"]


class DamagedDataError(ValueError):
    """A data file is damaged or not what its name says; the message names the file."""


def _check_complete(path: Path, text: bytes) -> None:
    """A file written by a program ends with a line end: without one, it was cut short."""
    if text and not text.endswith(b"\n"):
        raise DamagedDataError(
            f"{path}: the file ends mid-line (no line end after the last line): it looks cut short; "
            "copy or regenerate it (a complete file ends with a newline)"
        )


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise DamagedDataError(f"{what} {path} is a folder, not a file") from None


def read_csv_file(
    path: str | Path, required: Iterable[str] = (), *, numeric: Iterable[str] = (), what: str = "data file"
) -> pd.DataFrame:
    """A complete CSV with its `required` columns, the `numeric` ones all numbers; errors name the file."""
    path = Path(path)
    text = _read_bytes(path, what)
    _check_complete(path, text)
    try:
        frame = pd.read_csv(path)
    except UnicodeDecodeError as exc:
        raise DamagedDataError(f"{path}: not a text (CSV) file: byte {exc.start} is not UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DamagedDataError(f"{path}: the file is empty; expected a CSV with a header row") from None
    except pd.errors.ParserError as exc:
        raise DamagedDataError(f"{path}: not a valid CSV table: {exc}") from None
    missing = sorted(set(required) - set(frame.columns))
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    for column in numeric:
        _check_numeric(path, frame, column)
    return frame


def _check_numeric(path: Path, frame: pd.DataFrame, column: str) -> None:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DamagedDataError(
            f"{path}: column {column!r} needs a number on every row; line {row + 2} has {frame[column].iloc[row]!r}"
        )
    frame[column] = values


def read_json_file(path: str | Path, *, what: str = "data file") -> Any:
    """The parsed content of a complete JSON file; errors name the file and the position."""
    path = Path(path)
    text = _read_bytes(path, what)
    try:
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise DamagedDataError(f"{path}: not a text (JSON) file: byte {exc.start} is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DamagedDataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); the file may be cut short"
        ) from None
