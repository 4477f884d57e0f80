"""The result of one run: columnar tables as pandas DataFrames, the event and command logs.

Tables are keyed ``"<component>/<table>"`` (for example ``"site/state"`` or
``"grid/voltages"``). Everything round-trips exactly through a folder of Parquet files: the
event and command payloads (dicts in memory) are stored as canonical JSON text and parsed
back by :meth:`RunResult.from_parquet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from g2gsim.kernel.log import parse_payload, payload_json

_META_FILE = "meta.json"
#: Bytes of one slice converted to Arrow at a time when a table is written.
_SLICE_BYTES = 2**22
_EVENTS_FILE = "events.parquet"
_COMMANDS_FILE = "commands.parquet"


def _table_file(key: str) -> str:
    component, table = key.split("/", 1)
    return f"{component}__{table}.parquet"


@dataclass
class RunResult:
    """Tables, events, commands and metadata of a finished run."""

    tables: dict[str, pd.DataFrame]
    events: pd.DataFrame
    commands: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        """Per-component end-of-run facts (e.g. the grid's solve count), keyed by component."""
        return self.meta.get("summary", {})

    def table(self, key: str) -> pd.DataFrame:
        """One table by key, with an error listing the available ones."""
        try:
            return self.tables[key]
        except KeyError:
            raise KeyError(f"no table {key!r}; tables: {sorted(self.tables)}") from None

    def tables_of(self, table: str) -> dict[str, pd.DataFrame]:
        """All tables of one kind (e.g. ``"state"``) keyed by component name."""
        suffix = f"/{table}"
        return {k[: -len(suffix)]: v for k, v in self.tables.items() if k.endswith(suffix)}

    def events_of(self, topic: str) -> pd.DataFrame:
        """Events of one topic."""
        return self.events[self.events["topic"] == topic].reset_index(drop=True)

    # -- files --------------------------------------------------------------------------
    def file_names(self) -> list[str]:
        """The names of the files :meth:`to_parquet` writes into its folder."""
        return [*(_table_file(key) for key in self.tables), _EVENTS_FILE, _COMMANDS_FILE, _META_FILE]

    def to_parquet(self, directory: str | Path) -> Path:
        """Write every table, the logs and the metadata into a folder; returns the folder."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for key, frame in self.tables.items():
            write_parquet(frame, folder / _table_file(key))
        write_parquet(_payloads_as_json(self.events), folder / _EVENTS_FILE)
        write_parquet(_payloads_as_json(self.commands), folder / _COMMANDS_FILE)
        meta = {"tables": sorted(self.tables), "meta": self.meta}
        (folder / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        return folder

    @classmethod
    def from_parquet(cls, directory: str | Path) -> RunResult:
        """Read a folder written by :meth:`to_parquet`."""
        folder = Path(directory)
        meta_path = folder / _META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} holds no g2gsim results ({_META_FILE} is missing)")
        meta = json.loads(meta_path.read_text())
        tables = {key: pd.read_parquet(folder / _table_file(key)) for key in meta["tables"]}
        return cls(
            tables=tables,
            events=_payloads_parsed(pd.read_parquet(folder / _EVENTS_FILE)),
            commands=_payloads_parsed(pd.read_parquet(folder / _COMMANDS_FILE)),
            meta=meta["meta"],
        )


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a frame as Parquet without its index (as ``frame.to_parquet(path, index=False)``
    reads back), converting a slice of rows at a time, so writing a long table needs little
    memory beyond the table itself; Arrow's freed buffers go back to the system afterwards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = max(4096, _SLICE_BYTES // (8 * max(frame.shape[1], 1)))
    first = pa.Table.from_pandas(frame.iloc[:rows], preserve_index=False)
    with pq.ParquetWriter(path, first.schema) as writer:
        writer.write_table(first)
        del first
        for start in range(rows, len(frame), rows):
            writer.write_table(pa.Table.from_pandas(frame.iloc[start : start + rows], preserve_index=False))
    pa.default_memory_pool().release_unused()


def _payloads_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    """A log frame with its ``payload`` column as canonical JSON text (for Parquet)."""
    if "payload" not in frame:
        return frame
    text = [None if p is None else p if isinstance(p, str) else payload_json(p) for p in frame["payload"]]
    return frame.assign(payload=pd.Series(text, index=frame.index, dtype="string"))


def _payloads_parsed(frame: pd.DataFrame) -> pd.DataFrame:
    """A log frame read from Parquet with its ``payload`` column back to dicts."""
    if "payload" not in frame:
        return frame
    return frame.assign(
        payload=pd.Series([parse_payload(p) for p in frame["payload"]], index=frame.index, dtype=object)
    )
