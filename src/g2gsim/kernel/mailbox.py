"""Mailboxes: how components share state without calling each other.

A :class:`Mailbox` keeps the newest published value and its tick; reading it is free.
Waiting on it (``yield box.changed()``) wakes a process at the next publish. The wake-up
event is created only when somebody waits and dropped after it fires, so a mailbox nobody
waits on costs one attribute write per publish. A :class:`QueueMailbox` is a consumer's
private queue of every value published since it last drained it.

A lockstep group may step a quiet stretch of ticks at once (:mod:`g2gsim.kernel.lockstep`);
its members then publish the stretch in one call (:meth:`Mailbox.publish_stretch`): the
newest value becomes the stretch's last, queues receive every value, and a reader stepping
the same stretch takes the publisher's per-tick rows (:meth:`Mailbox.stretch_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import simpy
from simpy.events import NORMAL, Event

from g2gsim.kernel.events import Wakeup

T = TypeVar("T")

_UNSET = object()


class _Waitable:
    """Wake-up events keyed by SimPy priority, armed on demand and fired on publish."""

    __slots__ = ("_env", "_waiters")

    def __init__(self, env: simpy.Environment) -> None:
        self._env = env
        self._waiters: dict[int, Wakeup] | None = None

    def changed(self, priority: int = NORMAL) -> Event:
        """Event that fires at the next publish, processed at `priority` within its tick."""
        if self._waiters is None:
            self._waiters = {}
        event = self._waiters.get(priority)
        if event is None:
            event = self._waiters[priority] = Wakeup(self._env)
        return event

    @property
    def waited_on(self) -> bool:
        """Whether some process waits for the next publish."""
        return self._waiters is not None

    def _wake(self, value: object) -> None:
        waiters = self._waiters
        if waiters is None:
            return
        self._waiters = None
        for event_priority, event in waiters.items():
            event.fire(value, event_priority)


class QueueMailbox(_Waitable, Generic[T]):
    """Every value published since the last :meth:`drain`, oldest first, with its tick."""

    __slots__ = ("_items", "name")

    def __init__(self, env: simpy.Environment, name: str) -> None:
        super().__init__(env)
        self.name = name
        self._items: list[tuple[int, T]] = []

    def put(self, tick: int, value: T) -> None:
        """Append one value (called by the mailbox it subscribes to)."""
        self._items.append((tick, value))
        self._wake(value)

    def extend(self, items: list[tuple[int, T]]) -> None:
        """Append the (tick, value) items of a stretch published at once (nobody waits on it then)."""
        self._items.extend(items)

    def drain(self) -> list[tuple[int, T]]:
        """Return and forget every queued (tick, value)."""
        items, self._items = self._items, []
        return items

    def __len__(self) -> int:
        return len(self._items)


class Mailbox(_Waitable, Generic[T]):
    """Latest-value mailbox: the newest value and the tick it was published at."""

    __slots__ = ("_listeners", "_offer", "_queues", "_stretch", "_tick", "_value", "name")

    def __init__(self, env: simpy.Environment, name: str) -> None:
        super().__init__(env)
        self.name = name
        self._value: object = _UNSET
        self._tick = -1
        self._queues: list[QueueMailbox[T]] = []
        self._listeners: list[Callable[[int, T], None]] = []
        self._stretch: tuple[range, object] | None = None  # ticks and rows of the last stretch
        self._offer: tuple[range, Any] | None = None  # ticks and rows of a stretch not yet decided

    @property
    def has_value(self) -> bool:
        """Whether anything was published yet."""
        return self._value is not _UNSET

    @property
    def value(self) -> T:
        """The newest value; an error naming the mailbox if nothing was published yet."""
        if self._value is _UNSET:
            raise LookupError(f"mailbox {self.name!r} has no value yet (nothing was published)")
        return self._value  # type: ignore[return-value]

    def get(self, default: T | None = None) -> T | None:
        """The newest value, or `default` before the first publish."""
        return default if self._value is _UNSET else self._value  # type: ignore[return-value]

    @property
    def tick(self) -> int:
        """Tick of the newest value (-1 before the first publish)."""
        return self._tick

    def publish(self, tick: int, value: T) -> None:
        """Store a new value, feed subscribed queues and listeners, wake waiters."""
        self._value = value
        self._tick = tick
        self._stretch = self._offer = None
        for queue in self._queues:
            queue.put(tick, value)
        for listener in self._listeners:
            listener(tick, value)
        self._wake(value)

    @property
    def stretchable(self) -> bool:
        """Whether a stretch may be published at once: nobody waits on it or on one of its
        queues, and no listener (a link) must see each value as it is published."""
        return self._waiters is None and not self._listeners and not any(q.waited_on for q in self._queues)

    @property
    def has_queues(self) -> bool:
        """Whether some consumer queues every value."""
        return bool(self._queues)

    def publish_stretch(
        self, ticks: range, last: T, rows: object = None, values: Callable[[], Sequence[T]] | None = None
    ) -> None:
        """Publish the values of a quiet stretch's `ticks` at once (only when
        :attr:`stretchable`): `last` becomes the newest value; queues receive ``values()``
        (one per tick, built only when a queue wants them); `rows`, the publisher's per-tick
        data (a datacenter: its per-phase power in W, one row per tick), stays readable through
        :meth:`stretch_rows` for readers stepping the same stretch after it."""
        if not self.stretchable:
            raise RuntimeError(f"mailbox {self.name!r} cannot publish a stretch: somebody waits on each value")
        if self._queues:
            if values is None:
                raise ValueError(f"mailbox {self.name!r}: a stretch for queued readers needs its values")
            items = list(zip(ticks, values(), strict=True))
            for queue in self._queues:
                queue.extend(items)
        self._value = last
        self._tick = ticks[-1]
        self._stretch, self._offer = (ticks, rows), None

    def offer_stretch(self, ticks: range, rows: Any) -> None:
        """The per-tick rows (a sliceable sequence) this publisher would publish over `ticks` in
        a stretch, offered while its group decides on one: a reader stepping after it may
        look at them first (:meth:`offered_rows`), such as a grid counting the steps on which
        it would keep its last solve. The next publish withdraws the offer."""
        self._offer = (ticks, rows)

    def offered_rows(self, ticks: range) -> Any | None:
        """The first ``len(ticks)`` rows of an offer that covers `ticks` from its start, else None."""
        offer = self._offer
        if offer is None:
            return None
        offered, rows = offer
        if offered.start != ticks.start or offered.step != ticks.step or len(offered) < len(ticks):
            return None
        return rows[: len(ticks)]

    def stretch_rows(self, ticks: range) -> object | None:
        """The rows of the stretch just published over exactly `ticks`, else None (the newest
        value then predates the stretch, or came from a single publish)."""
        stretch = self._stretch
        if stretch is None or stretch[0] != ticks:
            return None
        return stretch[1]

    def subscribe_queue(self) -> QueueMailbox[T]:
        """A new private queue that receives every value published from now on."""
        queue: QueueMailbox[T] = QueueMailbox(self._env, f"{self.name}[queue]")
        self._queues.append(queue)
        return queue

    def add_listener(self, listener: Callable[[int, T], None]) -> None:
        """Call `listener(tick, value)` synchronously at every publish (used by links)."""
        self._listeners.append(listener)


def wait_until(box: Mailbox[T], predicate: Callable[[T], bool], priority: int = NORMAL):
    """Process helper: ``value = yield from wait_until(box, pred)`` returns the first match.

    This is how a threshold-triggered process waits: it sleeps until a publish whose value
    satisfies the predicate, with no polling clock.
    """
    while True:
        value = yield box.changed(priority)
        if predicate(value):
            return value
