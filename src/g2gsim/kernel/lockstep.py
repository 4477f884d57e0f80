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

Such a quiet stretch may also be stepped at once, from a skipped tick or from one the group
was woken at: when nothing is due before the last member's slot of its last tick, the group
asks every member how many of those ticks it can take in one call
(:meth:`Component.stretch_steps`; a datacenter inside its computed block, having applied the
commands its step of the first tick would apply; a grid whose loads come from it), and when
all can take two or more, each member steps them in one :meth:`Component.step_stretch`, in
the group's order: the members publish each stretch at once (:meth:`Mailbox.publish_stretch`)
and a later member reads an earlier one's per-tick rows. An event a member scheduled while it
prepared (a ramp's process) shortens the stretch to the ticks before it. Nothing else runs
inside a stretch, so the results are those of the ticks one by one; a member's failure at one
of its ticks (:class:`StretchStepFailed`), or while it prepares, ends the run at that tick.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from fractions import Fraction
from typing import Any, NoReturn, cast

import simpy
from simpy.events import Event

from g2gsim.kernel.component import Component
from g2gsim.kernel.events import PhasedTimeout

__all__ = ["StretchStepFailed", "lockstep_groups", "lockstep_process"]


class StretchStepFailed(Exception):
    """A member failed at one tick of a stretch it stepped at once: that tick and the failure."""

    def __init__(self, tick: int, cause: Exception) -> None:
        super().__init__(tick, cause)
        self.tick = tick
        self.cause = cause


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
    first_slot, last_slot = slots[0], slots[-1]
    may_skip = type(env) is simpy.Environment  # not the real-time kernel (see the module docstring)
    n_steps = ctx.step_count(first.period)
    k = 0
    while k < n_steps:
        tick = k * period
        head = _next_event(env)
        if may_skip and k and (head is None or head > (tick, first_slot)):
            env._now = tick  # nothing queued before the group's own timeout would run: do what it would do
        else:
            yield PhasedTimeout(env, tick - cast(int, env.now), first_slot)
        if may_skip:
            count = _stretch(members, tick, period, n_steps - k, last_slot, fail)
            if count:
                k += count
                continue
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
        k += 1


def _stretch(
    members: Sequence[Component],
    tick: int,
    period: int,
    left: int,
    last_slot: int,
    fail: Callable[[Component, Exception], NoReturn],
) -> int:
    """Step the quiet stretch from `tick` at once when every member can take two or more of
    its ticks (:meth:`Component.stretch_steps`, which may apply what this tick's step applies
    first); the ticks stepped (0: none, the tick is stepped on its own)."""
    env = members[0].ctx.env
    limit = min(left, _quiet_ticks(_next_event(env), tick, period, last_slot))
    if limit < 2:
        return 0
    member = members[0]
    try:
        for member in members:
            limit = min(limit, member.stretch_steps(tick, limit))
            if limit < 2:
                return 0
        # what the members scheduled while they prepared (a ramp's process, say) ends it earlier
        count = min(limit, _quiet_ticks(_next_event(env), tick, period, last_slot))
        if count < 2:
            return 0
        for member in members:
            member.step_stretch(tick, count)
    except StretchStepFailed as failure:
        env._now = failure.tick
        fail(member, failure.cause)
    except Exception as exc:
        fail(member, exc)
    env._now = tick + (count - 1) * period
    return count


def _quiet_ticks(head: tuple[int, int] | None, tick: int, period: int, last_slot: int) -> int:
    """How many of the group's ticks from `tick` end (its last member's slot) before `head`."""
    if head is None:
        return 1 << 62
    head_tick, head_slot = head
    count = (head_tick - tick - 1) // period + 1  # ticks strictly before the head's tick
    if (head_tick - tick) % period == 0 and last_slot < head_slot:
        count += 1  # the head's own tick, in a slot after the group's
    return count
