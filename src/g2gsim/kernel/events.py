"""The kernel's own SimPy events: a timeout in a phase slot, and a wake-up fired on publish.

SimPy's intended extension point is a subclass of :class:`simpy.events.Event` that sets its
own outcome (as :class:`simpy.events.Timeout` does). These two differ from SimPy's only in the
priority they are scheduled with, which is how the kernel orders one tick phase by phase.
"""

from __future__ import annotations

from typing import Any

import simpy
from simpy.events import Event, EventPriority

__all__ = ["PhasedTimeout", "Wakeup"]


class PhasedTimeout(Event):
    """Succeeds with `value` after `delay` ticks, processed at SimPy priority `priority`."""

    __slots__ = ()

    def __init__(self, env: simpy.Environment, delay: int, priority: int, value: Any = None) -> None:
        super().__init__(env)
        self._ok = True
        self._value = value
        env.schedule(self, EventPriority(priority), delay)


class Wakeup(Event):
    """Waits, untriggered, until :meth:`fire` succeeds it at a given priority in the current tick."""

    __slots__ = ()

    def fire(self, value: Any, priority: int) -> None:
        """Succeed now with `value`, processed at `priority` within the current tick."""
        self._ok = True
        self._value = value
        self.env.schedule(self, EventPriority(priority))
