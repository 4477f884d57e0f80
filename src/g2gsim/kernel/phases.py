"""Same-tick phases, mapped onto SimPy event priorities.

SimPy orders its queue by (time, priority, insertion id). Built-in events use priority 0
(urgent) and 1 (normal); g2gsim places its phase events after them, so within one tick
everything runs phase by phase and, inside a phase, in the scenario's declared order.
"""

from __future__ import annotations

from enum import IntEnum

#: Room for declared components within one phase.
SLOTS_PER_PHASE = 1 << 16
_FIRST_PHASE_PRIORITY = 2


class Phase(IntEnum):
    """The fixed order of roles within one tick (SPEC 1.2)."""

    DELIVER = 0
    DATACENTER = 1
    GRID = 2
    CONTROL = 3
    RECORD = 4


def priority(phase: Phase, order: int = 0) -> int:
    """SimPy priority of an event of `phase` for the component declared `order`-th."""
    if not 0 <= order < SLOTS_PER_PHASE:
        raise ValueError(f"declared order must be in [0, {SLOTS_PER_PHASE}), got {order}")
    return _FIRST_PHASE_PRIORITY + int(phase) * SLOTS_PER_PHASE + order


def phase_of(event_priority: int) -> Phase | None:
    """Phase of a SimPy priority, or None for SimPy's own urgent/normal events."""
    if event_priority < _FIRST_PHASE_PRIORITY:
        return None
    return Phase((event_priority - _FIRST_PHASE_PRIORITY) // SLOTS_PER_PHASE)
