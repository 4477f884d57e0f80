"""Components that share a period advance in one SimPy process (a lockstep group).

A periodic component's process wakes at every multiple of its period in its own phase slot:
one kernel event per step. Several components with the same period (the sites of a feeder and
its grid, stepping every 0.1 s) therefore cost one event each per tick, although nothing can
happen between them in most ticks. A lockstep group steps them in one process: one event per
tick, in the first member's slot, then each further member in phase and declared order.

The order of the tick is unchanged. Before each further member the group looks at the head of
the kernel's queue: when an event is due at this tick in a slot before that member's (a
process woken by what the previous member published, say), the group yields to the kernel in
the member's own slot, so that event runs first, exactly as with one process per member. The
one difference: an event scheduled in exactly a member's own slot (same tick, same SimPy
priority; the kernel never does this) runs after the member instead of by insertion order.

Between ticks the group looks at the queue's head once more: when nothing is due before its
next tick's slot (not even the ``until`` of ``env.run``), the kernel would only pop the group's
own timeout next, so the group moves the clock to that tick itself and steps on without the
event (the kernel's one timeout per tick becomes one per stretch of quiet ticks, e.g. the
nine ticks between two control steps). Only on SimPy's plain :class:`~simpy.Environment`: a
real-time kernel paces every tick against the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from fractions import Fraction
from typing import Any, NoReturn, cast

import simpy
from simpy.events import Event

from g2gsim.kernel.component import Component
from g2gsim.kernel.events import PhasedTimeout

__all__ = ["lockstep_groups", "lockstep_process"]


def lockstep_groups(components: Sequence[Component]) -> list[list[Component]]:
    """Components in processes: one list per process, in declared order of its first member.

    Components that step periodically (:attr:`Component.steps_periodically`) and share a
    period form one group, ordered by phase then declared order; every other component is a
    group of its own (its own :meth:`Component.run`).
    """
    by_period: dict[Fraction, list[Component]] = {}
    groups: list[list[Component]] = []
    for component in components:
        period = component.period
        if period is None or not component.steps_periodically:
            groups.append([component])
            continue
        group = by_period.get(period)
        if group is None:
            group = by_period[period] = []
            groups.append(group)
        group.append(component)
    for group in groups:
        group.sort(key=lambda c: c.ctx.priority)  # stable: declared order within a phase
    return groups


def _next_event(env: simpy.Environment) -> tuple[int, int] | None:
    """(tick, slot) of the kernel's next event, None when nothing is queued.

    SimPy keeps its queue as a heap of (time, priority, id, event), processed in that order
    (insertion order among equal time and priority); it exposes only the head's time (peek).
    """
    queue = env._queue
    if not queue:
        return None
    time, slot = queue[0][:2]
    return cast(int, time), int(slot)  # the kernel counts integer ticks


def lockstep_process(
    members: Sequence[Component], fail: Callable[[Component, Exception], NoReturn]
) -> Generator[Event, Any, None]:
    """The SimPy process of a lockstep group: every member's helpers, then the shared ticks.

    `fail(component, exc)` raises the error the kernel ends the run with for a member's failure.
    """
    first = members[0]
    ctx = first.ctx
    env = ctx.env
    for member in members:
        for helper in member.helper_processes():
            env.process(helper)
    assert first.period is not None
    period = ctx.clock.ticks(first.period)
    slots = [member.ctx.priority for member in members]
    rest = list(zip(members[1:], slots[1:], strict=True))
    first_slot = slots[0]
    may_skip = type(env) is simpy.Environment  # not the real-time kernel (see the module docstring)
    for k in range(ctx.step_count(first.period)):
        tick = k * period
        head = _next_event(env)
        if may_skip and k and (head is None or head > (tick, first_slot)):
            # nothing queued before the group's own timeout would run: do what it would do
            env._now = tick
        else:
            yield PhasedTimeout(env, tick - cast(int, env.now), first_slot)
        try:
            member = first
            first.step(tick)
            for member, slot in rest:
                head = _next_event(env)
                if head is not None and head < (tick, slot):  # due at this tick, in an earlier slot
                    yield PhasedTimeout(env, 0, slot)
                member.step(tick)
        except Exception as exc:
            fail(member, exc)
