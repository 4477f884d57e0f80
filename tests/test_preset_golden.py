"""Stored results of every bundled preset: refactors must keep them bit-identical.

For each non-live preset (full horizon, bundled data, its own seed) the file
``tests/data/preset_golden.json`` holds the headline metrics (exact floats) and a SHA-256
digest of every recorded column of every table, of the events per topic and of the commands
per kind. The test reruns each preset and compares. New tables, columns, event topics or
command kinds may appear (a feature may add them); everything stored must stay identical.

Update the stored values only on purpose, and say why in the commit::

    python tests/test_preset_golden.py --update [PRESET ...]
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from g2gsim.scenarios import bundled_scenarios, load_scenario, run_scenario

GOLDEN_FILE = Path(__file__).parent / "data" / "preset_golden.json"
#: Metrics that measure the machine, not the simulation.
VOLATILE_METRICS = frozenset({"wall_s"})


def _presets() -> list[str]:
    return sorted(name for name in bundled_scenarios() if not load_scenario(name).is_live)


def _canonical(value: Any) -> Any:
    """A JSON-able, order-independent form of one cell (JSON payload strings are parsed)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in "{[":
            try:
                return _canonical(json.loads(stripped))
            except ValueError:
                return value
        return value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, np.generic):
        return _canonical(value.item())
    return value


def column_digest(series: pd.Series) -> str:
    """SHA-256 of a column: raw bytes for numbers, canonical JSON for anything else."""
    digest = hashlib.sha256()
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = np.ascontiguousarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
        digest.update(b"f8")
        digest.update(values.tobytes())
    else:
        cells = [_canonical(v) for v in series.tolist()]
        digest.update(json.dumps(cells, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _grouped_digest(frame: pd.DataFrame, key: str) -> dict[str, dict[str, str]]:
    """Per value of `key` (event topic, command kind): digest of every other column."""
    out: dict[str, dict[str, str]] = {}
    if frame.empty:
        return out
    for group, rows in frame.groupby(key, sort=True):
        rows = rows.reset_index(drop=True)
        out[str(group)] = {c: column_digest(rows[c]) for c in rows.columns if c != key}
    return out


def fingerprint(name: str) -> dict[str, Any]:
    """Metrics and column digests of one full run of a bundled preset."""
    run = run_scenario(load_scenario(name), plots=False)
    metrics = {k: v for k, v in sorted(run.metrics.items()) if k not in VOLATILE_METRICS}
    tables = {
        key: {column: column_digest(frame[column]) for column in frame.columns}
        for key, frame in sorted(run.result.tables.items())
    }
    return {
        "metrics": metrics,
        "tables": tables,
        "events": _grouped_digest(run.result.events, "topic"),
        "commands": _grouped_digest(run.result.commands, "kind"),
    }


def _stored() -> dict[str, Any]:
    if not GOLDEN_FILE.is_file():
        return {}
    return json.loads(GOLDEN_FILE.read_text())


def _differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in stored["metrics"].items():
        got = now["metrics"].get(key, "<missing>")
        if got != value:
            problems.append(f"metric {key}: stored {value!r}, now {got!r}")
    for section in ("tables", "events", "commands"):
        for group, columns in stored[section].items():
            present = now[section].get(group)
            if present is None:
                problems.append(f"{section} {group!r} is missing")
                continue
            for column, digest in columns.items():
                if present.get(column) != digest:
                    problems.append(f"{section} {group!r} column {column!r} changed")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("name", _presets())
def test_preset_results_are_unchanged(name: str) -> None:
    stored = _stored().get(name)
    if stored is None:
        pytest.fail(f"no stored results for preset {name!r}; run: python tests/test_preset_golden.py --update {name}")
    problems = _differences(stored, fingerprint(name))
    assert not problems, f"preset {name!r} changed:\n  " + "\n  ".join(problems[:40])


def test_every_preset_has_stored_results() -> None:
    assert sorted(_stored()) == _presets()


def _update(names: list[str]) -> None:
    stored = _stored()
    for name in names or _presets():
        print(f"running {name} ...", flush=True)
        stored[name] = fingerprint(name)
    for name in [n for n in stored if n not in _presets()]:
        del stored[name]
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps(dict(sorted(stored.items())), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN_FILE}")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--update"]:
        sys.exit("usage: python tests/test_preset_golden.py --update [PRESET ...]")
    _update(sys.argv[2:])
