"""The SimPy co-simulation kernel: exact time, phases, mailboxes, links, components, runs.

The kernel knows nothing about datacenters or grids; components depend on it, never the
other way round.
"""

from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Component, Controller, DatacenterComponent, GridComponent
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, Link, LinkSpec, Seconds
from g2gsim.kernel.mailbox import Mailbox, QueueMailbox, wait_until
from g2gsim.kernel.phases import Phase, priority
from g2gsim.kernel.results import RunResult
from g2gsim.kernel.simulation import AssemblyError, ComponentError, RunHandle, Simulation
from g2gsim.kernel.streaming import read_chunks
from g2gsim.kernel.time import Clock, as_delay, as_period, as_seconds, fraction_gcd
from g2gsim.kernel.triggers import PERIODIC, Trigger

__all__ = [
    "INSTANT",
    "PERIODIC",
    "AssemblyError",
    "Clock",
    "Command",
    "Component",
    "ComponentError",
    "Controller",
    "DatacenterComponent",
    "GridComponent",
    "Link",
    "LinkSpec",
    "Mailbox",
    "Phase",
    "QueueMailbox",
    "RunContext",
    "RunHandle",
    "RunResult",
    "Seconds",
    "Simulation",
    "Trigger",
    "as_delay",
    "as_period",
    "as_seconds",
    "fraction_gcd",
    "priority",
    "read_chunks",
    "wait_until",
]
