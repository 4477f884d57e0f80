"""The datacenter role as controllers see it, shared by the trace-driven and the live datacenter."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING

from g2gsim.commands import SetBatchSize, ShiftReplicas
from g2gsim.kernel.component import DatacenterComponent

if TYPE_CHECKING:
    from g2gsim.data.source import DataSource
    from g2gsim.datacenter.config import DatacenterConfig
    from g2gsim.datacenter.spec import ModelSpec


class Datacenter(DatacenterComponent):
    """A site serving LLMs. Publishes :class:`DatacenterState` in mailbox ``state`` every step.

    Controllers rely only on what this class declares: the served models' specs (feasible
    batch sizes, deadlines), the data source behind the fitted curves, GPU capacity.
    """

    accepts = (SetBatchSize, ShiftReplicas)

    @property
    @abstractmethod
    def specs(self) -> Mapping[str, ModelSpec]:
        """Served models by label, sorted by label (the order of every state array)."""

    @property
    @abstractmethod
    def data(self) -> DataSource:
        """Where this site's power, latency and fitted curves come from."""

    @property
    @abstractmethod
    def capacity_gpus(self) -> int:
        """Total GPUs the site can host."""

    @property
    @abstractmethod
    def power_factor(self) -> float:
        """Site power factor (lagging), used by the grid attachment."""


class ConfiguredDatacenter(Datacenter):
    """A datacenter built from a :class:`DatacenterConfig` and a data source: the contract's
    properties read from them (shared by the trace-driven and the live datacenter)."""

    config: DatacenterConfig
    _data: DataSource
    _labels: tuple[str, ...]

    @property
    def specs(self) -> Mapping[str, ModelSpec]:
        return self.config.specs

    @property
    def data(self) -> DataSource:
        return self._data

    @property
    def capacity_gpus(self) -> int:
        return self.config.capacity_gpus

    @property
    def power_factor(self) -> float:
        return self.config.facility.power_factor

    @property
    def labels(self) -> tuple[str, ...]:
        """Served model labels, sorted (the order of every state array)."""
        return self._labels
