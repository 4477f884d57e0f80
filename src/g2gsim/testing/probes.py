"""A probe that looks inside a controller after each of its steps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Controller
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.time import TimeLike

__all__ = ["Probe"]


class Probe(Controller):
    """Declared right after a controller with the same period, it records ``look(controller)``
    after each of the controller's steps (controllers due at one tick run in declared order).

    :attr:`seen` holds (time s, snapshot) pairs; the snapshot should copy what it reads.
    """

    def __init__(self, target: Controller, look: Callable[[Any], Any], period: TimeLike | None = None) -> None:
        super().__init__(f"probe_{target.name}", period if period is not None else (target.period or Fraction(1)))
        self.target = target
        self.look = look
        self.seen: list[tuple[float, Any]] = []

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.seen = []

    def control(self, tick: int) -> Iterable[Command]:
        self.seen.append((self.ctx.seconds(tick), self.look(self.target)))
        return ()
