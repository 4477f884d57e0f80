"""dV/dP of a site's three phase loads by finite differences (SPEC 4.5).

From the operating point OpenDSS holds: solve the base point, then for each phase j add
`delta_kw` kW and `delta_kw` tan(phi) kvar to that phase's load, solve, take
(v - v0) / delta_kw as column j, and restore the load.

The four solves run at :data:`SENSITIVITY_TOLERANCE` (up to
:data:`SENSITIVITY_MAX_ITERATIONS` iterations), whatever the run's own power-flow tolerance:
a difference of two solves stopped at OpenDSS's default 1e-4 pu is off by about 1 % of H
(and by a different 1 % after a different sequence of solves), which is enough to move an
OFO trajectory. At 1e-10 H is reproducible to about 1e-8 relative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from g2gsim.grid.circuit import PhaseLoads
from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.loads import LoadBatch
from g2gsim.grid.solving import solver_settings

__all__ = ["SENSITIVITY_MAX_ITERATIONS", "SENSITIVITY_TOLERANCE", "PerturbedSite", "finite_difference"]

#: Power-flow tolerance (pu) and iteration limit of the solves of an estimate.
SENSITIVITY_TOLERANCE = 1e-10
SENSITIVITY_MAX_ITERATIONS = 100


class PerturbedSite(Protocol):
    """Where a site's three phase loads sit in the engine and in the load batch."""

    @property
    def load_indices(self) -> PhaseLoads: ...
    @property
    def slot(self) -> int: ...
    @property
    def tan_phi(self) -> float: ...


def finite_difference(
    engine: DSSEngine,
    loads: LoadBatch,
    site: PerturbedSite,
    delta_kw: float,
    solve: Callable[[], None],
    read: Callable[[], np.ndarray],
) -> np.ndarray:
    """H (n_v, 3), pu per kW, with four tight solves; every load is back at its value and the
    run's solver settings are back afterwards (the circuit is left solved at the last
    perturbed point: the caller re-solves)."""
    if not (math.isfinite(delta_kw) and delta_kw > 0.0):
        raise ValueError(f"delta_kw, the sensitivity perturbation, must be a positive number of kW, got {delta_kw!r}")
    with solver_settings(engine, SENSITIVITY_TOLERANCE, SENSITIVITY_MAX_ITERATIONS):
        solve()
        v0 = read()
        h = np.empty((len(v0), 3))
        dq = delta_kw * site.tan_phi
        for j, index in enumerate(site.load_indices):
            kw0, q0 = float(loads.kw[site.slot + j]), float(loads.kvar[site.slot + j])
            engine.set_load_kw_kvar(index, kw0 + delta_kw, q0 + dq)
            solve()
            h[:, j] = (read() - v0) / delta_kw
            engine.set_load_kw_kvar(index, kw0, q0)
    return h
