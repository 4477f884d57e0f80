"""What a grid records per step: preallocated rows of voltages, taps, site power and storage.

Row k holds grid step k (a re-solve at the same tick overwrites it). The tables are built on
demand: voltages and taps wide (one column per entry), site power and storage long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from g2gsim.grid.circuit import PHASE_LETTERS
from g2gsim.grid.state import GridState, VoltageIndex

__all__ = ["STORAGE_COLUMNS", "StepRecorder"]

#: Recorded columns of a battery (GridState.storage keys).
STORAGE_COLUMNS = ("kwh", "soc", "kw", "kvar")


class StepRecorder:
    """Per-step rows of one grid run, for `n_steps` steps."""

    def __init__(
        self,
        n_steps: int,
        index: VoltageIndex,
        regulators: Sequence[str],
        sites: Sequence[str],
        storage: Sequence[str],
    ) -> None:
        self.index = index
        self.regulators = list(regulators)
        self.sites = list(sites)
        self.storage = list(storage)
        #: Rows written so far (the last step recorded plus one).
        self.rows = 0
        n = n_steps
        self._times = np.full(n, np.nan)
        self._voltages = np.full((n, len(index)), np.nan)
        self._taps = np.full((n, len(self.regulators)), np.nan)
        self._site_kw = np.full((n, 3 * len(self.sites)), np.nan)
        self._storage = np.full((n, len(self.storage), len(STORAGE_COLUMNS)), np.nan)

    @property
    def last_time_s(self) -> float:
        """Time of the last recorded step (0 before any)."""
        return float(self._times[max(self.rows - 1, 0)]) if self.rows else 0.0

    def record(self, row: int, state: GridState, tap_row: np.ndarray, site_kw: np.ndarray) -> None:
        """Write step `row`: the state's time, voltages and storage, the taps and site kW as written."""
        self._times[row] = state.time_s
        self._voltages[row] = state.voltages
        if self.regulators:
            self._taps[row] = tap_row
        if self.sites:
            self._site_kw[row] = site_kw
        if self.storage:
            self.record_storage(row, state.storage)
        self.rows = row + 1

    def record_stretch(
        self,
        first: int,
        times: Sequence[float],
        voltages: np.ndarray | Sequence[np.ndarray],
        tap_row: np.ndarray,
        site_kw: np.ndarray,
    ) -> None:
        """Write steps `first` .. (one per time) of a stretch stepped at once: their times and
        voltages, the taps they kept and the site kW written at each (one row per step); a
        stretch with batteries records their states per step with :meth:`record_storage`."""
        stop = first + len(times)
        if stop == first:
            return
        self._times[first:stop] = times
        self._voltages[first:stop] = voltages
        if self.regulators:
            self._taps[first:stop] = tap_row
        if self.sites:
            self._site_kw[first:stop] = site_kw
        self.rows = stop

    def record_storage(self, row: int, storage: Mapping[str, Mapping[str, float]]) -> None:
        """Write the batteries' states of step `row`."""
        for j, name in enumerate(self.storage):
            values = storage[name]
            self._storage[row, j] = [values[c] for c in STORAGE_COLUMNS]

    def tables(self) -> dict[str, pd.DataFrame]:
        """Voltages (wide), taps (wide), site power (long) and, with batteries, storage (long)."""
        n = self.rows
        times = self._times[:n]
        # A view of the recording buffer, not a copy (rows before n are never written again):
        # at one row per step the voltage table is the largest table of a run.
        voltages = pd.DataFrame(self._voltages[:n], columns=self.index.labels(), copy=False)
        voltages.insert(0, "time_s", times)
        taps = pd.DataFrame(self._taps[:n], columns=self.regulators)
        taps.insert(0, "time_s", times)
        out = {"voltages": voltages, "taps": taps, "site_power": self._site_power_table(n)}
        if self.storage:
            out["storage"] = self._storage_table(n)
        return out

    def _site_power_table(self, n: int) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "time_s": np.repeat(self._times[:n], len(self.sites)),
                "site": np.tile(np.array(self.sites, dtype=object), n),
            }
        )
        flat = self._site_kw[:n].reshape(n * len(self.sites), 3)  # rows: step-major, then site
        for j, letter in enumerate(PHASE_LETTERS):
            frame[f"kw_{letter}"] = flat[:, j]
        return frame

    def _storage_table(self, n: int) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "time_s": np.repeat(self._times[:n], len(self.storage)),
                "storage": np.tile(np.array(self.storage, dtype=object), n),
            }
        )
        flat = self._storage[:n].reshape(n * len(self.storage), len(STORAGE_COLUMNS))
        for j, column in enumerate(STORAGE_COLUMNS):
            frame[column] = flat[:, j]
        return frame
