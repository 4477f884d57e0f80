"""The linearised grid: an OpenDSS grid whose steps use a linear voltage model, for coarse screening.

:class:`LinearizedOpenDSSGrid` replaces each step's power flow by
``v = v0 + Hp (p - p0) + Hq (q - q0)`` over every attached load's per-phase kW and kvar
(sites, generators, external loads). ``v0``, ``p0``, ``q0`` and the matrices come from
OpenDSS at the first step's operating point (two finite-difference solves per attached load
phase) and are refreshed whenever taps change. Sites, controllers and metrics are unchanged;
a sensitivity estimate is answered from the same matrices. Batteries and OpenDSS's own
regulator control are not modelled (reset raises). :meth:`LinearizedOpenDSSGrid.probe_error`
measures the model's error against a full power flow at the present operating point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from g2gsim.grid.config import GridConfig
from g2gsim.grid.errors import GridError
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel.context import RunContext

__all__ = ["LinearizedOpenDSSGrid"]


class LinearizedOpenDSSGrid(OpenDSSGrid):
    """An :class:`OpenDSSGrid` whose steps use a linear voltage model (see the module docstring)."""

    _mirrors_loads = True  # the model reads each step's loads from the batch's buffers

    def __init__(
        self, name: str, config: GridConfig, *, seed: int | None = None, perturbation_kw: float = 10.0
    ) -> None:
        super().__init__(name, config, seed=seed)
        if not (math.isfinite(perturbation_kw) and perturbation_kw > 0):
            raise ValueError(f"perturbation_kw must be positive, got {perturbation_kw!r}")
        self.perturbation_kw = float(perturbation_kw)
        self._lin: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._load_ids: list[int] = []
        self.n_linearizations = 0
        self.n_linear_steps = 0

    def reset(self, ctx: RunContext) -> None:
        if self.config.storage:
            raise GridError(f"grid {self.name!r}: the linearised grid does not model batteries; use full power flow")
        if self.config.regulator_self_control:
            raise GridError(f"grid {self.name!r}: the linearised grid cannot follow OpenDSS's own regulator control")
        self._lin = None
        super().reset(ctx)
        engine = self.engine
        names = [f"g2g_dc{i}" for i in range(len(self.config.sites))]
        names += [f"g2g_gen{i}" for i in range(len(self.config.generators))]
        names += [f"g2g_load{i}" for i in range(len(self.config.loads))]
        self._load_ids = [engine.load_index(f"{n}_{p}") for n in names for p in "abc"]
        self._lin = None
        self.n_linearizations = 0
        self.n_linear_steps = 0

    def _taps_changed(self) -> None:
        super()._taps_changed()
        self._lin = None  # refresh the model at the next step

    def linearize(self, time_s: float) -> None:
        """Build v0 and the kW / kvar sensitivities at the loads now written to OpenDSS."""
        loads = self._loads
        assert loads is not None
        engine = self.engine
        kw0, kvar0 = loads.kw.copy(), loads.kvar.copy()
        super()._solve(time_s)
        v0 = super()._read_vector()
        n = len(self._load_ids)
        hp, hq = np.empty((len(v0), n)), np.empty((len(v0), n))
        d = self.perturbation_kw
        for col, index in enumerate(self._load_ids):
            engine.set_load_kw_kvar(index, kw0[col] + d, kvar0[col])
            super()._solve(time_s)
            hp[:, col] = (super()._read_vector() - v0) / d
            engine.set_load_kw_kvar(index, kw0[col], kvar0[col] + d)
            super()._solve(time_s)
            hq[:, col] = (super()._read_vector() - v0) / d
            engine.set_load_kw_kvar(index, kw0[col], kvar0[col])
        super()._solve(time_s)  # leave the circuit at the operating point
        self._lin = (v0, kw0, kvar0, hp, hq)
        self.n_linearizations += 1

    def _solve(self, time_s: float) -> None:
        if self._loads is None:  # the solve during reset, before loads are attached
            super()._solve(time_s)
            return
        if self._lin is None:
            self.linearize(time_s)
        self.n_linear_steps += 1

    def _read_vector(self) -> np.ndarray:
        if self._lin is None or self._loads is None:
            return super()._read_vector()
        v0, kw0, kvar0, hp, hq = self._lin
        return v0 + hp @ (self._loads.kw - kw0) + hq @ (self._loads.kvar - kvar0)

    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        """dV/dP of a site's phases from the linear model (kW with the site's kvar ratio)."""
        if self._lin is None:
            self.linearize(self.ctx.now_s)
        assert self._lin is not None
        target = self._site_by_name(site)
        _, _, _, hp, hq = self._lin
        cols = [target.slot + j for j in range(3)]
        self._n_sensitivity += 1
        return hp[:, cols] + target.tan_phi * hq[:, cols]

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update(linearized=True, n_linearizations=self.n_linearizations, n_linear_steps=self.n_linear_steps)
        return out

    def probe_error(self, site: str, delta_kw: float) -> float:
        """Largest |V_linear - V_power_flow| (pu) for `delta_kw` more on each phase of `site`.

        Linearises at the present operating point (after a run), then solves the perturbed
        point with full power flow and compares; the circuit is restored afterwards.
        """
        loads = self._loads
        if loads is None:
            raise RuntimeError("probe_error needs a grid that has run")
        time_s = 0.0 if self._recorder is None else self._recorder.last_time_s
        loads.write()
        self.linearize(time_s)
        v0, kw0, kvar0, hp, hq = self._lin  # type: ignore[misc]
        target = self._site_by_name(site)
        dp = np.zeros(len(kw0))
        cols = slice(target.slot, target.slot + 3)
        dp[cols] = delta_kw
        dq = dp * target.tan_phi
        predicted = v0 + hp @ dp + hq @ dq
        engine = self.engine
        for col in range(target.slot, target.slot + 3):
            engine.set_load_kw_kvar(self._load_ids[col], kw0[col] + dp[col], kvar0[col] + dq[col])
        super()._solve(time_s)
        actual = super()._read_vector()
        for col in range(target.slot, target.slot + 3):
            engine.set_load_kw_kvar(self._load_ids[col], kw0[col], kvar0[col])
        super()._solve(time_s)
        return float(np.nanmax(np.abs(predicted - actual)))
