"""dV/dP of a site's three phase loads by finite differences (SPEC 4.5).

From the operating point OpenDSS holds: solve the base point, then for each phase j add
`delta_kw` kW and `delta_kw` tan(phi) kvar to that phase's load, solve, take
(v - v0) / delta_kw as column j, and restore the load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from g2gsim.grid.circuit import PhaseLoads
from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.loads import LoadBatch

__all__ = ["PerturbedSite", "finite_difference"]


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
    """H (n_v, 3), pu per kW, with four solves; every load is back at its value afterwards
    (the circuit is left solved at the last perturbed point: the caller re-solves)."""
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
