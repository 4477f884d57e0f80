"""Stream a long run's tables to disk in Parquet chunks, so a crash loses at most one chunk.

Every `chunk_s` of simulated time (in the record phase) the writer asks each component for
its tables so far and appends the rows it has not written yet as one Parquet part file per
table: ``<dir>/chunks/<component>__<table>/part-00003.parquet``. :func:`read_chunks` puts
the parts back together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from g2gsim.kernel.component import Component

CHUNK_FOLDER = "chunks"


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
                frame.iloc[start:].to_parquet(folder / f"part-{part:05d}.parquet", index=False)
                self._written_rows[key] = len(frame)
                self._parts[key] = part + 1
                written += len(frame) - start
        return written


def read_chunks(directory: str | Path) -> dict[str, pd.DataFrame]:
    """Reassemble streamed chunks into tables keyed ``"<component>/<table>"``."""
    root = Path(directory) / CHUNK_FOLDER
    if not root.is_dir():
        raise FileNotFoundError(f"{directory} holds no streamed chunks ({root} is missing)")
    tables = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        parts = sorted(folder.glob("part-*.parquet"))
        if parts:
            component, table = folder.name.split("__", 1)
            tables[f"{component}/{table}"] = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return tables
