"""The grid role as controllers see it: state mailbox plus a few services."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

import numpy as np

from g2gsim.grid.commands import ResolveGrid, SetStoragePower, SetTaps
from g2gsim.grid.state import VoltageIndex
from g2gsim.kernel.component import GridComponent


class Grid(GridComponent):
    """A power-flow grid. Publishes :class:`GridState` in mailbox ``state`` after every solve."""

    accepts = (SetTaps, SetStoragePower, ResolveGrid)

    @property
    @abstractmethod
    def voltage_index(self) -> VoltageIndex:
        """Layout of the voltage vector (fixed for a run)."""

    @abstractmethod
    def site_bus(self, site: str) -> str:
        """Bus a datacenter is attached to."""

    @property
    @abstractmethod
    def sites(self) -> Mapping[str, str]:
        """Attached datacenter name -> bus."""

    @abstractmethod
    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        """dV/dP (pu per kW) of every voltage-vector entry for each phase of a site (SPEC 4.5)."""

    @abstractmethod
    def resolve_now(self) -> None:
        """Apply pending commands, solve again and publish within the current tick."""
