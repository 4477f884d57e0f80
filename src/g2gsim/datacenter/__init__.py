"""Datacenters: site configuration, server pool, power and latency, the trace-driven process.

The public contract: a site is a :class:`Datacenter` component that publishes a
:class:`DatacenterState` in its ``state`` mailbox every step and accepts the commands of
:mod:`g2gsim.datacenter.commands`. :class:`OfflineDatacenter` replays traces;
the live site is in :mod:`g2gsim.live`.
"""

from g2gsim.datacenter.base import ConfiguredDatacenter, Datacenter
from g2gsim.datacenter.commands import SetBatchSize, SetPowerCap, ShiftReplicas
from g2gsim.datacenter.config import (
    DatacenterConfig,
    Facility,
    ModelDeployment,
    PowerAugmentation,
    ReplicaSchedule,
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
    "TrainingRun",
    "TrainingSchedule",
]
