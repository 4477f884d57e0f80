"""Exact simulation time: seconds as Fractions, SimPy time as an integer count of base ticks.

Floats given by a user are converted through their decimal string, so ``0.1`` means 1/10
exactly. One base tick is the gcd of every period, latency and event time of a scenario,
so every one of them is a whole number of ticks and no float ever drives the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from numbers import Rational

import numpy as np

TimeLike = Fraction | int | float | str | Decimal


def as_seconds(value: TimeLike, *, name: str = "time") -> Fraction:
    """Convert a user time value to exact seconds (``0.1`` -> ``Fraction(1, 10)``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got the boolean {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int | Rational):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
        # repr of the builtin float: numpy 2 spells np.float64 as "np.float64(0.1)".
        return Fraction(repr(float(value)))
    if isinstance(value, Decimal | str):
        try:
            return Fraction(str(value).strip())
        except ValueError as exc:
            raise ValueError(f"{name} must be a number of seconds, got {value!r}") from exc
    raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")


def as_period(value: TimeLike, *, name: str = "period") -> Fraction:
    """Convert a period (strictly positive seconds), with an error that names the field."""
    seconds = as_seconds(value, name=name)
    if seconds <= 0:
        raise ValueError(f"{name} must be > 0 s, got {value!r}")
    return seconds


def as_delay(value: TimeLike, *, name: str = "delay") -> Fraction:
    """Convert a latency or offset (non-negative seconds)."""
    seconds = as_seconds(value, name=name)
    if seconds < 0:
        raise ValueError(f"{name} must be >= 0 s, got {value!r}")
    return seconds


def fraction_gcd(values: Iterable[Fraction]) -> Fraction:
    """gcd of positive fractions: gcd(numerators) / lcm(denominators) over reduced forms."""
    numerator, denominator = 0, 1
    for value in values:
        if value == 0:
            continue
        value = abs(Fraction(value))
        numerator = math.gcd(numerator, value.numerator)
        denominator = math.lcm(denominator, value.denominator)
    if numerator == 0:
        raise ValueError("the base tick needs at least one non-zero period")
    return Fraction(numerator, denominator)


@dataclass(frozen=True, slots=True)
class Clock:
    """Converts between exact seconds and integer SimPy ticks for one run."""

    tick: Fraction

    @classmethod
    def for_times(cls, times: Iterable[Fraction]) -> Clock:
        """The clock whose tick is the gcd of all given periods, latencies and event times."""
        return cls(fraction_gcd(times))

    def ticks(self, seconds: TimeLike) -> int:
        """Exact number of ticks in a time; an error if it is not a whole number of ticks."""
        count = as_seconds(seconds) / self.tick
        if count.denominator != 1:
            raise ValueError(
                f"{as_seconds(seconds)} s is not a whole number of base ticks of {self.tick} s; "
                "declare it when assembling the run so the tick accounts for it"
            )
        return count.numerator

    def ticks_before(self, horizon: TimeLike) -> int:
        """Number of whole ticks strictly before the horizon (the horizon is never a step)."""
        return math.ceil(as_seconds(horizon) / self.tick)

    def seconds(self, ticks: int) -> Fraction:
        """Exact seconds of a tick count."""
        return ticks * self.tick

    def seconds_float(self, ticks: int) -> float:
        """Seconds of a tick count as a float, for recording and numerics only."""
        return float(ticks * self.tick)


def step_count(period: Fraction, horizon: Fraction) -> int:
    """Number of steps at 0, dt, 2dt, ... strictly before the horizon."""
    if horizon <= 0:
        return 0
    return math.ceil(horizon / period)


#: Integers up to this convert to float64 exactly (a quotient of two is then correctly rounded).
_EXACT_FLOAT_INT = 2**53


@dataclass(frozen=True)
class StepClock:
    """Step times of a component with a fixed period, as correctly rounded floats of exact ticks."""

    period_ticks: int
    tick: Fraction

    def seconds(self, step: int) -> float:
        """Time of one step, s."""
        return step * self.period_ticks * self.tick.numerator / self.tick.denominator

    def times(self, first: int, stop: int) -> np.ndarray:
        """Times of steps first .. stop - 1, s (each equal to :meth:`seconds`).

        In NumPy when the largest numerator and the denominator are exact float64 integers
        (float division is then correctly rounded like Python's int / int); else one by one."""
        scale = self.period_ticks * self.tick.numerator
        if max(abs(first), abs(stop - 1)) * scale < _EXACT_FLOAT_INT and self.tick.denominator < _EXACT_FLOAT_INT:
            return np.arange(first, stop, dtype=np.int64) * scale / self.tick.denominator
        return np.array([self.seconds(k) for k in range(first, stop)], dtype=float)

    def first_step(self, seconds: float, *, after: bool = False) -> int:
        """First step whose time is >= `seconds` (> with `after`), compared as floats."""
        period = self.tick * self.period_ticks
        step = max(math.ceil(Fraction(repr(float(seconds))) / period), 0)

        def reached(k: int) -> bool:
            return self.seconds(k) > seconds if after else self.seconds(k) >= seconds

        while step > 0 and reached(step - 1):
            step -= 1
        while not reached(step):
            step += 1
        return step
