"""The datacenter role as controllers see it, shared by the trace-driven and the live datacenter."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from g2gsim.datacenter.commands import SetBatchSize, ShiftReplicas
from g2gsim.datacenter.schedule import ReplicaTimeline
from g2gsim.kernel.component import DatacenterComponent

if TYPE_CHECKING:
    from g2gsim.data.source import DataSource
    from g2gsim.data.spec import ModelSpec
    from g2gsim.datacenter.config import DatacenterConfig
    from g2gsim.kernel.commands import Command
    from g2gsim.kernel.context import RunContext


class Datacenter(DatacenterComponent):
    """A site serving LLMs. Publishes :class:`DatacenterState` in mailbox ``state`` every step.

    Controllers rely only on what this class declares: the served models' specs (feasible
    batch sizes, deadlines), the data source behind the fitted curves, GPU capacity.
    """

    accepts: ClassVar[tuple[type[Command], ...]] = (SetBatchSize, ShiftReplicas)

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
    properties read from them, and the replica bookkeeping both the trace-driven and the live
    datacenter share (model lookup, capacity checks, ShiftReplicas).

    Subclasses set, at reset: ``_offset`` (replicas shifted per model), ``_gpr`` (GPUs per
    replica) and ``_refused`` (refused shifts). The scheduled replicas come from the run's
    :class:`ReplicaTimeline` (built from the config at first use, or set by the subclass).
    """

    config: DatacenterConfig
    _data: DataSource
    _labels: tuple[str, ...]
    _offset: np.ndarray
    _gpr: np.ndarray
    _refused: int
    _timeline: ReplicaTimeline | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._timeline = None

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

    # -- replica bookkeeping --------------------------------------------------------------------
    def _replica_timeline(self) -> ReplicaTimeline:
        """This run's scheduled replicas as change events."""
        if self._timeline is None:
            assert self.period is not None
            self._timeline = ReplicaTimeline.build(self.config, self.period, self.ctx.step_count(self.period))
        return self._timeline

    def _step_seconds(self, step: int) -> float:
        """Time of one of this site's steps, s."""
        assert self.period is not None
        return self.ctx.seconds(step * self.ctx.clock.ticks(self.period))

    def _index(self, label: str, command: Command) -> int:
        """Position of a model label; a KeyError naming the served labels otherwise."""
        try:
            return self._labels.index(label)
        except ValueError:
            raise KeyError(
                f"{type(command).__name__} for site {self.name!r} names model {label!r}; "
                f"models here: {list(self._labels)}"
            ) from None

    def _servers(self, replicas: np.ndarray) -> np.ndarray:
        """Servers needed per row of a (rows, models) replica table."""
        per_server = self.config.facility.gpus_per_server
        return (-(-(replicas * self._gpr) // per_server)).sum(axis=1)

    def _misfits(self, replicas: np.ndarray) -> np.ndarray:
        """Rows of a replica table that exceed the site's GPUs or servers."""
        over = (replicas @ self._gpr > self.config.capacity_gpus) | (self._servers(replicas) > self.config.num_servers)
        return np.flatnonzero(over)

    def _shift(self, command: ShiftReplicas, k: int) -> None:
        """Add a replica offset if it keeps the model >= 0 now and the site within capacity
        for the rest of the run (now and at every later scheduled change); otherwise record
        a ``shift_refused`` event naming the first time it would not fit."""
        m = self._index(command.model, command)
        offset = self._offset.copy()
        offset[m] += int(command.delta)
        steps, scheduled = self._replica_timeline().from_step(k)
        now = int(scheduled[0, m] + offset[m])
        payload: dict[str, Any] = {"model": command.model, "delta": int(command.delta)}
        if now < 0:
            self._refuse(payload, f"the model would have {now} replicas")
            return
        future = np.maximum(scheduled + offset, 0)
        bad = self._misfits(future)
        if bad.size:
            j = int(bad[0])
            self._refuse(
                payload,
                f"at t = {self._step_seconds(int(steps[j])):g} s the site would need {int(future[j] @ self._gpr)} "
                f"GPUs / {int(self._servers(future[j : j + 1])[0])} servers (capacity {self.config.capacity_gpus} "
                f"GPUs, {self.config.num_servers} servers)",
            )
            return
        self._offset = offset
        self._offset_changed()
        self.ctx.event("replicas_shifted", {**payload, "replicas": now})

    def _offset_changed(self) -> None:
        """Hook: the replica offsets just changed (a shift was accepted)."""

    def _refuse(self, payload: dict[str, Any], reason: str) -> None:
        self._refused += 1
        self.ctx.event("shift_refused", {**payload, "reason": reason})
