"""When a controller wakes: at its period, when what it reads changes, or when a watched value leaves a band.

A :class:`Trigger` is part of a controller's configuration (``trigger = "on_change"`` or
``trigger = { threshold_pu = 0.002 }`` in a scenario file). The default, ``"periodic"``, is
the plain clock: a step at 0, dt, 2dt, ... An event trigger has no clock at all: the
controller's process sleeps on the mailboxes it subscribed to with ``wake=True`` (their
``changed()`` events, so a message delayed by a measurement link wakes it when it arrives),
and steps no more often than once per minimum interval (a :class:`PhasedTimeout` to the end
of the interval when a change comes early). A threshold trigger steps only when a value the
controller watches (:meth:`Controller.watched_values`, e.g. the voltages it observes) moved
by more than ``threshold_pu`` since its last step or lies outside its band
(:meth:`Controller.watched_band`). A controller that is not settled (:meth:`Controller.settled`,
e.g. duals still releasing a batch) keeps stepping at its minimum interval without waiting.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
from simpy.events import Event

from g2gsim.kernel.links import Seconds

if TYPE_CHECKING:
    from g2gsim.kernel.component import Controller

__all__ = ["PERIODIC", "Trigger", "TriggerLike", "as_trigger", "triggered_steps"]

TriggerMode = Literal["periodic", "on_change", "threshold"]


class Trigger(BaseModel):
    """How a controller is woken: ``"periodic"``, ``"on_change"`` or ``{ threshold_pu = ... }``.

    In a file: a mode name, or a table ``{ threshold_pu = 0.002, min_interval_s = 2 }``
    (threshold mode) or ``{ mode = "on_change", min_interval_s = 2 }``. `min_interval_s`
    defaults to the controller's period.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    mode: TriggerMode = "periodic"
    threshold_pu: float | None = Field(default=None, gt=0, description="threshold mode: wake on a move this large")
    min_interval_s: Seconds | None = Field(default=None, description="least time between steps (None: the period)")

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"mode": value}
        if isinstance(value, Mapping) and "mode" not in value and "threshold_pu" in value:
            return {**value, "mode": "threshold"}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Trigger:
        if self.mode == "threshold" and self.threshold_pu is None:
            raise ValueError("a threshold trigger needs threshold_pu, e.g. trigger = { threshold_pu = 0.002 }")
        if self.mode != "threshold" and self.threshold_pu is not None:
            raise ValueError(f"threshold_pu applies to a threshold trigger only, not to mode {self.mode!r}")
        if self.mode == "periodic" and self.min_interval_s is not None:
            raise ValueError(
                "min_interval_s applies to event triggers only (a periodic controller steps at its period)"
            )
        if self.min_interval_s is not None and self.min_interval_s <= 0:
            raise ValueError(f"min_interval_s must be > 0 s, got {float(self.min_interval_s)!r}")
        return self

    @model_serializer(mode="wrap")
    def _short_form(self, handler: Any) -> Any:
        """The shortest form that reads back the same: a mode name when nothing else is set."""
        if self.threshold_pu is None and self.min_interval_s is None:
            return self.mode
        data = {k: v for k, v in handler(self).items() if v is not None}
        if self.mode == "threshold":
            data.pop("mode", None)
        return data

    @property
    def is_periodic(self) -> bool:
        """True for the plain clock (the default)."""
        return self.mode == "periodic"


#: The default trigger: a step at every period.
PERIODIC = Trigger()

TriggerLike = Trigger | str | Mapping[str, Any]


def as_trigger(value: TriggerLike, *, owner: str = "controller") -> Trigger:
    """A :class:`Trigger` from a trigger, a mode name or a mapping; errors name the owner."""
    if isinstance(value, Trigger):
        return value
    try:
        return Trigger.model_validate(value)
    except ValueError as exc:
        raise ValueError(f"{owner}: invalid trigger {value!r}: {exc}") from None


class _ThresholdWatch:
    """The threshold test: values moved by more than `threshold` since the last step, or left the band."""

    __slots__ = ("_controller", "_reference", "_threshold")

    def __init__(self, controller: Controller, threshold: float) -> None:
        self._controller = controller
        self._threshold = threshold
        self._reference: np.ndarray | None = None

    def crossed(self) -> bool:
        values = self._controller.watched_values()
        if values is None:
            return False
        if self._reference is None or self._reference.shape != values.shape:
            return True
        low, high = self._controller.watched_band()
        with np.errstate(invalid="ignore"):
            moved = np.abs(values - self._reference) > self._threshold
            outside = (values < low) | (values > high)
        return bool(moved.any() or outside.any())

    def stepped(self) -> None:
        values = self._controller.watched_values()
        self._reference = None if values is None else np.array(values, dtype=float)


def triggered_steps(controller: Controller, interval: Fraction) -> Generator[Event, Any, None]:
    """The SimPy process of an event-triggered controller (see the module text).

    It sleeps until one of the controller's wake mailboxes publishes (its ``changed()``
    event, processed in the controller's own phase slot), steps at once or at the end of the
    minimum interval since its last step, and, while the controller is not settled, steps
    again at every interval without waiting for a change.
    """
    ctx = controller.ctx
    sources = ctx.wake_sources
    if not sources:
        return  # nothing can wake it
    trigger = controller.trigger
    watch = None if trigger.threshold_pu is None else _ThresholdWatch(controller, trigger.threshold_pu)
    interval_ticks = ctx.clock.ticks(interval)
    horizon = ctx.horizon_ticks
    next_allowed = 0
    if not controller.settled():
        yield ctx.at_tick(0)  # its first step in its own phase slot of tick 0, not at process start
    while True:
        if controller.settled():
            yield ctx.env.any_of([box.changed(ctx.priority) for box in sources])
            if watch is not None and not watch.crossed():
                continue
        if ctx.now < next_allowed:
            if next_allowed >= horizon:
                return
            yield ctx.at_tick(next_allowed)
        controller.step(ctx.now)
        if watch is not None:
            watch.stepped()
        next_allowed = ctx.now + interval_ticks
