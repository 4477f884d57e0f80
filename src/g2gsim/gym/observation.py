"""The observation vector of an environment, laid out once and filled with NumPy each step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from g2gsim.datacenter.state import DatacenterState
from g2gsim.grid.state import VoltageIndex
from g2gsim.gym.config import ObservationConfig

__all__ = ["ModelTable", "Observer", "VoltageCheck"]


@dataclass(frozen=True)
class ModelTable:
    """The agent site's models in its state order: feasible batch sizes, deadlines, replica scale."""

    labels: tuple[str, ...]
    feasible: tuple[tuple[int, ...], ...]
    deadline_s: np.ndarray
    max_replicas: np.ndarray

    @property
    def log2_min(self) -> np.ndarray:
        """log2 of each model's smallest feasible batch."""
        return np.log2([f[0] for f in self.feasible])

    @property
    def log2_range(self) -> np.ndarray:
        """log2 span of each model's feasible batches (1 where there is one size)."""
        span = np.log2([f[-1] for f in self.feasible]) - self.log2_min
        return np.where(span > 0, span, 1.0)


@dataclass(frozen=True, slots=True)
class VoltageCheck:
    """One voltage vector against limits (NaN entries, absent phases, ignored)."""

    under: float
    """Worst undervoltage, pu below v_min (0: none)."""
    over: float
    """Worst overvoltage, pu above v_max (0: none)."""
    outside: float
    """Share of bus-phases outside [v_min, v_max]."""
    penalty: float
    """Sum over bus-phases of under^2 + over^2, pu^2."""

    @classmethod
    def of(cls, v: np.ndarray, v_min: float, v_max: float) -> VoltageCheck:
        """The check of `v` (pu) against [v_min, v_max]."""
        if not v.size:
            return cls(0.0, 0.0, 0.0, 0.0)
        under = np.fmax(v_min - v, 0.0)  # fmax drops NaN
        over = np.fmax(v - v_max, 0.0)
        seen = v.size - np.count_nonzero(np.isnan(v))
        outside = np.count_nonzero(under) + np.count_nonzero(over)
        return cls(
            float(under.max()), float(over.max()), outside / seen if seen else 0.0, float(under @ under + over @ over)
        )

    def summary(self) -> tuple[float, float, float]:
        """(worst undervoltage, worst overvoltage, share outside): the observation's summary."""
        return self.under, self.over, self.outside


class Observer:
    """Builds the observation vector of :mod:`g2gsim.gym.config` from the newest grid and site states."""

    def __init__(
        self,
        config: ObservationConfig,
        index: VoltageIndex,
        models: ModelTable,
        *,
        v_min: float,
        v_max: float,
    ) -> None:
        self.config = config
        self.models = models
        self.v_min = config.v_min if config.v_min is not None else v_min
        self.v_max = config.v_max if config.v_max is not None else v_max
        buses = config.voltage_buses if config.voltage_buses is not None else index.buses
        self._bus_rows = np.stack([index.rows_of(bus) for bus in buses])  # (n_bus, 3), -1 absent
        self._rows = np.sort(self._bus_rows[self._bus_rows >= 0])
        self._whole = len(self._rows) == len(index)  # every entry observed: a shared check applies
        self._zones = {name: _rows(index, zone) for name, zone in config.zones.items()}
        self._log2_min = models.log2_min
        self._log2_range = models.log2_range
        self.names = self._names(index, buses)
        self.size = len(self.names)

    def _names(self, index: VoltageIndex, buses: Sequence[str]) -> tuple[str, ...]:
        config = self.config
        names: list[str] = []
        if config.voltages == "all":
            names += [f"v.{bus}.{phase}" for bus, phase in (index.entries[r] for r in self._rows)]
        elif config.voltages == "bus_minmax":
            names += [f"v.{bus}.{end}" for bus in buses for end in ("min", "max")]
        if config.summary == "global":
            names += ["under", "over", "violation_fraction"]
        elif config.summary == "zones":
            names += [f"{zone}.{what}" for zone in self._zones for what in ("under", "over", "violation_fraction")]
        if config.models:
            for label in self.models.labels:
                names += [f"{label}.{what}" for what in ("batch", "itl_ratio", "replicas", "batch_change")]
            names.append("site_power_mw")
        if config.time:
            names.append("time")
        return tuple(names)

    def observe(
        self,
        voltages: np.ndarray,
        site: DatacenterState | None,
        change: np.ndarray,
        elapsed: float,
        check: VoltageCheck | None = None,
    ) -> np.ndarray:
        """The observation: `voltages` of the grid state, the site's state, the change of the
        commanded log2 batch per model at the last step and the elapsed episode fraction
        (`check`: the whole vector already checked against these limits)."""
        config = self.config
        out = np.zeros(self.size, dtype=np.float32)
        at = 0
        if config.voltages == "all":
            at = _put(out, at, voltages if self._whole else voltages[self._rows])
        elif config.voltages == "bus_minmax":
            padded = np.append(voltages, np.nan)[self._bus_rows]
            ends = np.empty((len(padded), 2))
            ends[:, 0] = np.fmin.reduce(padded, axis=1)
            ends[:, 1] = np.fmax.reduce(padded, axis=1)
            at = _put(out, at, ends.ravel())
        if config.summary == "global":
            if check is None or not self._whole:
                check = VoltageCheck.of(voltages[self._rows], self.v_min, self.v_max)
            at = _put(out, at, check.summary())
        elif config.summary == "zones":
            for rows in self._zones.values():
                at = _put(out, at, VoltageCheck.of(voltages[rows], self.v_min, self.v_max).summary())
        if config.models:
            at = self._put_models(out, at, site, change)
        if config.time:
            out[at] = elapsed
        nan = np.isnan(out)
        if nan.any():  # a voltage OpenDSS could not solve
            out[nan] = 0.0
        return out

    def _put_models(self, out: np.ndarray, at: int, site: DatacenterState | None, change: np.ndarray) -> int:
        n = len(self.models.labels)
        if site is None:
            return at + 4 * n + 1
        block = out[at : at + 4 * n].reshape(n, 4)
        block[:, 0] = (np.log2(np.maximum(site.batch, 1.0)) - self._log2_min) / self._log2_range
        ratio = site.itl_s / self.models.deadline_s
        block[:, 1] = np.fmin(np.fmax(ratio, 0.0), 3.0)  # NaN (unknown ITL) becomes 0 below
        block[:, 2] = site.replicas / self.models.max_replicas
        block[:, 3] = np.fmin(np.fmax(change / self._log2_range, -1.0), 1.0)
        out[at + 4 * n] = site.total_power_w / 1e6
        return at + 4 * n + 1


def _put(out: np.ndarray, at: int, values: np.ndarray | tuple[float, ...]) -> int:
    end = at + len(values)
    out[at:end] = values
    return end


def _rows(index: VoltageIndex, buses: Sequence[str]) -> np.ndarray:
    rows = np.concatenate([index.rows_of(bus) for bus in buses])
    return np.sort(rows[rows >= 0])
