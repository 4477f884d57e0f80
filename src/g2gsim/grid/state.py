"""What a grid publishes after each solve (mailbox ``state``): its typed data contract.

A grid publishes one :class:`GridState` in its ``state`` mailbox after every solve: at each
of its steps and at each re-solve within a tick (a re-solve publishes again at the same
tick). Its voltages follow the grid's :class:`VoltageIndex`: every (bus, phase) of the
non-excluded buses, phase-major (all phase-1 nodes in node order, then phase 2, then
phase 3), one index object for the whole run, known before the run from
``grid.voltage_index``. Values are never mutated after publishing, so a reader may keep them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class VoltageIndex:
    """The fixed layout of a grid's voltage vector: (bus, phase) entries, phase-major (SPEC 4.4).

    Built once per run; every GridState of the run shares it.
    """

    entries: tuple[tuple[str, int], ...]
    _bus_rows: Mapping[str, np.ndarray] = field(repr=False)  # bus -> (3,) row per phase, -1 absent

    @classmethod
    def from_entries(cls, entries: tuple[tuple[str, int], ...]) -> VoltageIndex:
        """Build the index and its per-bus lookup table."""
        rows: dict[str, np.ndarray] = {}
        for row, (bus, phase) in enumerate(entries):
            if not 1 <= phase <= 3:
                raise ValueError(f"phase of {bus!r} must be 1, 2 or 3, got {phase}")
            rows.setdefault(bus, np.full(3, -1, dtype=np.int64))[phase - 1] = row
        return cls(tuple(entries), MappingProxyType(rows))

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def buses(self) -> tuple[str, ...]:
        """Buses present, in first-appearance order."""
        return tuple(self._bus_rows)

    def rows_of(self, bus: str) -> np.ndarray:
        """Row per phase (a, b, c) of a bus, -1 where the phase is absent."""
        try:
            return self._bus_rows[bus.lower()]
        except KeyError:
            raise KeyError(f"bus {bus!r} is not in the voltage vector (excluded or unknown)") from None

    def labels(self) -> list[str]:
        """Column labels ``"bus.phase"``."""
        return [f"{bus}.{phase}" for bus, phase in self.entries]


@dataclass(frozen=True, slots=True, eq=False)
class GridState:
    """Voltages (pu) of one solve, plus taps and storage states.

    `voltages[i]` is the magnitude of `index.entries[i]` in pu of its bus's base; `taps` maps
    each regulator control to its tap ratio (pu); `storage` maps each battery to its
    ``kwh``, ``soc`` (0-1), ``kw`` (> 0 discharging) and ``kvar``.
    """

    grid: str
    time_s: float
    index: VoltageIndex
    voltages: np.ndarray  # (len(index),) pu, phase-major
    taps: Mapping[str, float]  # regulator control -> tap ratio, pu
    storage: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # name -> kWh, soc, kw, kvar

    def bus_voltages(self, bus: str) -> np.ndarray:
        """Voltage of a bus per phase (a, b, c), NaN where the phase is absent."""
        rows = self.index.rows_of(bus)
        out = np.full(3, np.nan)
        present = rows >= 0
        out[present] = self.voltages[rows[present]]
        return out


@dataclass(frozen=True, slots=True, eq=False)
class SensitivityReply:
    """The answer to a SensitivityRequest, published in the grid's mailbox ``sensitivity/<site>``.

    `h` is dV/dP of every voltage-vector entry for each phase of the site's load (pu per kW,
    shape (len(index), 3)), estimated at the operating point of `time_s`.
    """

    grid: str
    site: str
    time_s: float
    index: VoltageIndex
    h: np.ndarray
    delta_kw: float = 100.0
