"""Stream a long run's tables to disk in Parquet chunks, so a crash loses at most one chunk.

Every `chunk_s` of simulated time (in the record phase) the writer asks each component for
its tables so far and appends the rows it has not written yet as one Parquet part file per
table: ``<dir>/chunks/<component>__<table>/part-00003.parquet``. Each part is written under a
temporary name and renamed when complete, so a part file is whole or absent. :func:`read_chunks`
puts the parts back together; a damaged last part (a disk filled up, a copy cut short) is
skipped with a :class:`ChunkWarning` naming it, so the rows before it stay readable.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from g2gsim.kernel.component import Component
from g2gsim.kernel.results import write_parquet

__all__ = ["CHUNK_FOLDER", "ChunkError", "ChunkWarning", "ChunkWriter", "read_chunks"]

CHUNK_FOLDER = "chunks"


class ChunkWarning(UserWarning):
    """A streamed part could not be read and was skipped (the message names the file)."""


class ChunkError(ValueError):
    """A streamed part other than the last of its table is damaged; the message names it."""


class ChunkWriter:
    """Appends new rows of every component table to part files."""

    def __init__(self, directory: Path, components: Sequence[Component]) -> None:
        self.directory = Path(directory) / CHUNK_FOLDER
        self.components = components
        self._written_rows: dict[str, int] = {}
        self._parts: dict[str, int] = {}

    def flush(self) -> int:
        """Write rows recorded since the last flush; returns how many rows were written."""
        written = 0
        for component in self.components:
            for table, frame in component.tables().items():
                key = f"{component.name}__{table}"
                start = self._written_rows.get(key, 0)
                if len(frame) <= start:
                    continue
                part = self._parts.get(key, 0)
                folder = self.directory / key
                folder.mkdir(parents=True, exist_ok=True)
                _write_part(frame.iloc[start:], folder / f"part-{part:05d}.parquet")
                self._written_rows[key] = len(frame)
                self._parts[key] = part + 1
                written += len(frame) - start
        return written


def _write_part(frame: pd.DataFrame, final: Path) -> None:
    """Write one part under a temporary name in the same folder, then rename it into place."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        write_parquet(frame, tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _read_parts(folder: Path) -> pd.DataFrame | None:
    """One table's parts in order; a damaged last part is skipped with a warning."""
    parts = sorted(folder.glob("part-*.parquet"))
    frames = []
    for i, part in enumerate(parts):
        try:
            frames.append(pd.read_parquet(part))
        except (OSError, pa.ArrowException, ValueError) as exc:
            if i < len(parts) - 1:
                raise ChunkError(f"streamed part {part} is damaged and later parts follow it: {exc}") from None
            warnings.warn(f"skipped the damaged last streamed part {part}: {exc}", ChunkWarning, stacklevel=3)
    return pd.concat(frames, ignore_index=True) if frames else None


def read_chunks(directory: str | Path) -> dict[str, pd.DataFrame]:
    """Reassemble streamed chunks into tables keyed ``"<component>/<table>"``."""
    root = Path(directory) / CHUNK_FOLDER
    if not root.is_dir():
        raise FileNotFoundError(f"{directory} holds no streamed chunks ({root} is missing)")
    tables = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        frame = _read_parts(folder)
        if frame is not None:
            component, table = folder.name.split("__", 1)
            tables[f"{component}/{table}"] = frame
    return tables
