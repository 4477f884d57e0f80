"""A stand-in grid for controller tests: it publishes given voltages and answers sensitivity asks.

:class:`ScriptedGrid` keeps the grid contract of :mod:`g2gsim.grid`: a :class:`Grid` that
publishes a :class:`~g2gsim.grid.state.GridState` in mailbox ``state`` at every step, over a
:class:`~g2gsim.grid.state.VoltageIndex` known before the run. Its voltages are fixed, a
script per step, or drawn by Hypothesis (:mod:`g2gsim.testing.strategies`). Its dV/dP matrix
H is fixed; it is served both by :meth:`ScriptedGrid.estimate_sensitivity` and, for a
:class:`~g2gsim.grid.commands.SensitivityRequest`, as a
:class:`~g2gsim.grid.state.SensitivityReply` published at once in mailbox
``sensitivity/<site>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from g2gsim.grid.base import Grid
from g2gsim.grid.commands import ResolveGrid, SensitivityRequest, SetTaps
from g2gsim.grid.config import StorageSpec
from g2gsim.grid.state import GridState, VoltageIndex
from g2gsim.kernel.commands import Command
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.mailbox import Mailbox
from g2gsim.kernel.time import TimeLike

__all__ = ["ScriptedGrid", "VoltageScript", "three_phase"]

#: Voltages (pu, one per voltage-index entry) at the grid's k-th step.
VoltageScript = Callable[[int], np.ndarray]


def three_phase(buses: Iterable[str]) -> list[tuple[str, int]]:
    """Voltage-index entries of three-phase buses, phase-major (SPEC 4.4)."""
    names = list(buses)
    return [(bus, phase) for phase in (1, 2, 3) for bus in names]


def _script(voltages: Any, n: int) -> VoltageScript:
    """A per-step voltage function from a function, one fixed vector, or rows of a script."""
    if callable(voltages):
        return voltages
    table = np.asarray(voltages, dtype=float)
    if table.ndim == 1 and table.shape == (n,):
        return lambda k: table
    if table.ndim == 2 and table.shape[1] == n and len(table):
        return lambda k: table[min(k, len(table) - 1)]
    raise ValueError(
        f"voltages must be a function of the step, a vector of {n} values or rows of {n} values; got shape {table.shape}"
    )


class ScriptedGrid(Grid):
    """A grid that publishes given voltages at each step, with a fixed sensitivity H.

    Args:
        name: Component name.
        entries: The voltage index, (bus, phase) pairs phase-major (see :func:`three_phase`).
        voltages: Voltages per step: ``f(k) -> (n,)``, one (n,) vector for every step, or an
            (steps, n) table whose last row repeats.
        sites: Attached site -> bus.
        h: dV/dP (n, 3), pu per kW, for every site (default -1e-5 everywhere).
        period: Step, s.
        taps: Tap ratio per regulator at the start; SetTaps changes them at the next step
            (or at once with ``resolve=True``) and each GridState carries them.
        storage: Batteries by name (what ``storage_spec`` returns).

    Every delivered command is kept in :attr:`received` as (arrival time s, command);
    :attr:`sensitivity_calls` counts the H served either way.
    """

    def __init__(
        self,
        name: str,
        entries: Sequence[tuple[str, int]],
        voltages: VoltageScript | Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
        *,
        sites: Mapping[str, str] | None = None,
        h: np.ndarray | None = None,
        period: TimeLike = Fraction(1),
        taps: Mapping[str, float] | None = None,
        storage: Sequence[StorageSpec] = (),
    ) -> None:
        super().__init__(name, period)
        self.entries = tuple(entries)
        self._index = VoltageIndex.from_entries(self.entries)
        self.voltages = _script(voltages, len(self.entries))
        self._sites = dict(sites or {})
        self.h = np.full((len(self.entries), 3), -1e-5) if h is None else np.asarray(h, dtype=float)
        if self.h.shape != (len(self.entries), 3):
            raise ValueError(f"ScriptedGrid {name!r}: h must have shape ({len(self.entries)}, 3), got {self.h.shape}")
        self.initial_taps = dict(taps or {})
        self._storage = {spec.name: spec for spec in storage}
        self.received: list[tuple[float, Command]] = []
        self.sensitivity_calls = 0

    # -- the grid contract --------------------------------------------------------------------
    @property
    def voltage_index(self) -> VoltageIndex:
        return self._index

    def site_bus(self, site: str) -> str:
        try:
            return self._sites[site]
        except KeyError:
            raise KeyError(f"site {site!r} is not attached to {self.name!r}; attached: {sorted(self._sites)}") from None

    @property
    def sites(self) -> Mapping[str, str]:
        return self._sites

    def storage_spec(self, name: str) -> StorageSpec:
        """A battery by name."""
        try:
            return self._storage[name]
        except KeyError:
            raise KeyError(f"grid {self.name!r} has no storage {name!r}; storage: {sorted(self._storage)}") from None

    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        self.site_bus(site)
        self.sensitivity_calls += 1
        return self.h.copy()

    def resolve_now(self) -> None:
        """Apply pending commands and publish the latest voltages again, at the current tick."""
        self._take_commands()
        if self._last is not None:
            self._resolves += 1
            self._publish(self.ctx.now, self._last)

    # -- lifecycle ----------------------------------------------------------------------------
    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._box: Mailbox[GridState] = ctx.mailbox("state")
        self.taps = dict(self.initial_taps)
        self.received = []
        self.sensitivity_calls = 0
        self._resolves = 0
        self._last: np.ndarray | None = None
        self._k = 0

    def deliver(self, command: Command) -> None:
        self.received.append((self.ctx.now_s, command))
        if isinstance(command, SensitivityRequest):
            super().deliver(command)  # the Grid base answers in sensitivity/<site> at once
        elif isinstance(command, ResolveGrid) or (isinstance(command, SetTaps) and command.resolve):
            super().deliver(command)
            self.resolve_now()
        else:
            super().deliver(command)

    def step(self, tick: int) -> None:
        self._take_commands()
        k = self._k
        self._k += 1
        v = np.array(self.voltages(k), dtype=float)
        if v.shape != (len(self.entries),):
            raise ValueError(
                f"ScriptedGrid {self.name!r}: step {k} gave voltages of shape {v.shape}, expected ({len(self.entries)},)"
            )
        self._last = v
        self._publish(tick, v)

    def _take_commands(self) -> None:
        for command in self.take_commands():
            if isinstance(command, SetTaps):
                self.taps.update({key.lower(): float(ratio) for key, ratio in command.taps.items()})

    def _publish(self, tick: int, voltages: np.ndarray) -> None:
        state = GridState(self.name, self.ctx.seconds(tick), self._index, voltages.copy(), dict(self.taps))
        self._box.publish(tick, state)

    @property
    def last_state(self) -> GridState | None:
        """The newest state it published in this run (None before its first step)."""
        return self._box.get()

    def summary(self) -> dict[str, Any]:
        return {"n_steps": self._k, "n_resolves": self._resolves, "n_sensitivity_estimates": self.sensitivity_calls}
