"""The time window a metric scores: rows with ``start_s <= time_s < end_s``.

Half-open, so consecutive windows split a run without counting a state twice (a warm-up,
then the rest; or one period such as a training job, then the others).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def check_window(start_s: float | None, end_s: float | None) -> None:
    """Raise ValueError unless each given bound is finite and start_s < end_s."""
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if start_s is not None and end_s is not None and not start_s < end_s:
        raise ValueError(f"start_s ({start_s}) must be below end_s ({end_s})")


def in_window(times: pd.Series | pd.Index, start_s: float | None, end_s: float | None) -> np.ndarray:
    """Boolean mask of the times inside [start_s, end_s) (a missing bound does not limit)."""
    values = np.asarray(times, dtype=float)
    keep = np.ones(values.shape, dtype=bool)
    if start_s is not None:
        keep &= values >= start_s
    if end_s is not None:
        keep &= values < end_s
    return keep


def time_window(table: pd.DataFrame, start_s: float | None = None, end_s: float | None = None) -> pd.DataFrame:
    """The rows of a table with a ``time_s`` column inside [start_s, end_s) (the table itself when unbounded)."""
    check_window(start_s, end_s)
    if start_s is None and end_s is None:
        return table
    return table[in_window(table["time_s"], start_s, end_s)]


def describe_window(start_s: float | None, end_s: float | None) -> str:
    """`` in the window [a, b) s`` for error messages (empty when unbounded)."""
    if start_s is None and end_s is None:
        return ""
    low = "-inf" if start_s is None else f"{start_s:g}"
    high = "inf" if end_s is None else f"{end_s:g}"
    return f" in the window [{low}, {high}) s"
