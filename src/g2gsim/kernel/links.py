"""Links: command and measurement channels with latency, seeded jitter and seeded loss.

A message sent at tick t with delay d (plus a jitter drawn uniformly from the whole ticks
in [0, jitter]) is delivered at phase 0 (deliver) of tick t + d. With no delay it is handed
over at once, so it takes effect at the target's first step after t, as in OpenG2G. A
dropped message is reported to the run's event log, never silently lost.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Annotated, Any, TypeVar, cast

import numpy as np
import simpy
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from g2gsim.kernel.events import PhasedTimeout
from g2gsim.kernel.phases import Phase, priority
from g2gsim.kernel.time import Clock, as_delay


def _seconds_validator(value: Any) -> Fraction:
    return as_delay(value, name="seconds")


#: Non-negative exact seconds in a pydantic model; serialised as a float when exact, else "n/d".
Seconds = Annotated[
    Fraction,
    BeforeValidator(_seconds_validator),
    PlainSerializer(
        lambda f: float(f) if Fraction(repr(float(f))) == f else f"{f.numerator}/{f.denominator}",
        return_type=float | str,
    ),
]


class LinkSpec(BaseModel):
    """A link's configuration: fixed delay, optional jitter bound and loss probability."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delay_s: Seconds = Field(default=Fraction(0), description="fixed latency in seconds (>= 0)")
    jitter_s: Seconds = Field(
        default=Fraction(0), description="extra latency drawn uniformly in [0, jitter_s] (whole ticks)"
    )
    loss_probability: float = Field(default=0.0, ge=0.0, le=1.0, description="probability that a message is dropped")

    @property
    def is_instant(self) -> bool:
        """True when messages pass at once and always (no delay, jitter or loss)."""
        return self.delay_s == 0 and self.jitter_s == 0 and self.loss_probability == 0.0

    def times(self) -> list[Fraction]:
        """Durations the base tick must divide."""
        return [t for t in (self.delay_s, self.jitter_s) if t > 0]


INSTANT = LinkSpec()


M = TypeVar("M")  # the message type a link carries


class Link:
    """A runtime link: schedules deliveries on the kernel and reports drops."""

    __slots__ = ("_delay", "_env", "_jitter", "_loss", "_on_drop", "_priority", "_rng", "name")

    def __init__(
        self,
        env: simpy.Environment,
        clock: Clock,
        spec: LinkSpec,
        rng: np.random.Generator,
        on_drop: Callable[[str, object], None],
        name: str,
    ) -> None:
        self._env = env
        self._delay = clock.ticks(spec.delay_s)
        self._jitter = clock.ticks(spec.jitter_s)
        self._loss = spec.loss_probability
        self._rng = rng
        self._on_drop = on_drop
        self._priority = priority(Phase.DELIVER)
        self.name = name

    def delay_ticks(self) -> int | None:
        """Draw this message's fate: its delay in ticks, or None when it is lost."""
        if self._loss > 0.0 and self._rng.random() < self._loss:
            return None
        if self._jitter:
            return self._delay + int(self._rng.integers(0, self._jitter + 1))
        return self._delay

    def send(self, message: M, deliver: Callable[[M], None]) -> int | None:
        """Send a message; returns its delivery tick, or None if it was dropped."""
        delay = self.delay_ticks()
        if delay is None:
            self._on_drop(self.name, message)
            return None
        if delay == 0:
            deliver(message)
            return cast(int, self._env.now)  # the clock counts integer ticks
        event = PhasedTimeout(self._env, delay, self._priority, message)
        event.callbacks.append(lambda ev: deliver(ev.value))
        return cast(int, self._env.now) + delay
