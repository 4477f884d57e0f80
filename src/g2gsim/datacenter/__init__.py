"""Datacenters: site configuration, server pool, power and latency, the trace-driven process.

The public contract: a site is a :class:`Datacenter` component that publishes a
:class:`DatacenterState` in its ``state`` mailbox every step and accepts the commands of
:mod:`g2gsim.datacenter.commands`. :class:`OfflineDatacenter` replays traces;
the live site is in :mod:`g2gsim.live`.

The mailbox contract, for writing a stand-in site:

- What it publishes: in ``reset(ctx)`` it creates its mailbox, ``box = ctx.mailbox("state")``;
  at every one of its steps (``period``, in the datacenter phase: before the grid and the
  controllers of the same tick) it publishes one :class:`DatacenterState`,
  ``box.publish(tick, state)``: power per phase (``power_w``, W, what the grid reads),
  per model (sorted labels) the batch, replicas, observed ITL and inference power. A state's
  arrays are never changed after publishing.
- What it reads: commands only. A link hands each command to :meth:`~g2gsim.kernel.Component.deliver`
  (its inbox); the site takes them with ``take_commands()`` at its next step and applies them
  then (the command log's ``applied_s``). :class:`SetBatchSize` and :class:`ShiftReplicas`
  are what every :class:`Datacenter` accepts; the trace-driven site also accepts
  :class:`SetPowerCap`.
- What controllers and the grid ask of the component: :attr:`Datacenter.specs`,
  :attr:`~Datacenter.data`, :attr:`~Datacenter.capacity_gpus` and
  :attr:`~Datacenter.power_factor`. A grid needs less (:mod:`g2gsim.grid.sites`): any
  component with a ``power_factor`` whose ``state`` values carry ``power_w``.
"""

from g2gsim.datacenter.base import ConfiguredDatacenter, Datacenter
from g2gsim.datacenter.blocks import draw_ahead, draws_ahead
from g2gsim.datacenter.commands import SetBatchSize, SetPowerCap, ShiftReplicas
from g2gsim.datacenter.config import (
    DatacenterConfig,
    Facility,
    ModelDeployment,
    PowerAugmentation,
    ReplicaSchedule,
    TraceReplay,
    TrainingRun,
    TrainingSchedule,
)
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.datacenter.power_cap import GpuPowerCaps
from g2gsim.datacenter.state import DatacenterState

__all__ = [
    "ConfiguredDatacenter",
    "Datacenter",
    "DatacenterConfig",
    "DatacenterState",
    "Facility",
    "GpuPowerCaps",
    "ModelDeployment",
    "OfflineDatacenter",
    "PowerAugmentation",
    "ReplicaSchedule",
    "SetBatchSize",
    "SetPowerCap",
    "ShiftReplicas",
    "TraceReplay",
    "TrainingRun",
    "TrainingSchedule",
    "draw_ahead",
    "draws_ahead",
]
