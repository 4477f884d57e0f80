"""Exact time: user values to Fractions, the base tick, ticks <-> seconds (SPEC 1.1)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from g2gsim.kernel.time import Clock, StepClock, as_delay, as_period, as_seconds, fraction_gcd, step_count

# Periods and latencies as engineers write them: decimal strings, floats and exact fractions.
DECIMAL_STRINGS = ["0.05", "0.1", "0.15", "0.2", "0.25", "0.5", "1", "2", "3.6", "0.001"]
FRACTION_STRINGS = ["1/3", "2/3", "1/7", "5/6"]

positive_fractions = st.fractions(min_value=Fraction(1, 1000), max_value=100, max_denominator=1000)


# -- as_seconds / as_period / as_delay ---------------------------------------------------------
@pytest.mark.parametrize("value", ["0.1", 0.1, Decimal("0.1"), Fraction(1, 10), " 0.1 ", "1/10"])
def test_a_tenth_is_exactly_one_tenth_whatever_its_spelling(value: object) -> None:
    assert as_seconds(value) == Fraction(1, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", DECIMAL_STRINGS)
def test_floats_convert_through_their_decimal_string(text: str) -> None:
    assert as_seconds(float(text)) == Fraction(text)
    assert as_seconds(np.float64(text)) == Fraction(text)


def test_integers_and_fractions_are_kept_exact() -> None:
    assert as_seconds(3) == Fraction(3)
    assert as_seconds(np.int64(7)) == Fraction(7)
    third = Fraction(1, 3)
    assert as_seconds(third) is third
    assert as_seconds("1/3") == third


@pytest.mark.parametrize("convert", [as_seconds, as_period, as_delay])
@pytest.mark.parametrize("flag", [True, False])
def test_booleans_are_rejected_with_the_field_name(convert, flag: bool) -> None:
    with pytest.raises(TypeError, match=r"site\.period.*boolean"):
        convert(flag, name="site.period")


@pytest.mark.parametrize("convert", [as_seconds, as_period, as_delay])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", Decimal("NaN")])
def test_non_finite_values_are_rejected_with_the_field_name(convert, value: object) -> None:
    with pytest.raises(ValueError, match=r"link\.delay_s"):
        convert(value, name="link.delay_s")


@pytest.mark.parametrize("value", ["abc", "", "0.1s"])
def test_unparseable_strings_are_rejected_with_the_field_name(value: str) -> None:
    with pytest.raises(ValueError, match=r"grid\.period"):
        as_seconds(value, name="grid.period")


@pytest.mark.parametrize("value", [None, [0.1], object(), 1j])
def test_non_numbers_are_a_type_error_with_the_field_name(value: object) -> None:
    with pytest.raises(TypeError, match="horizon"):
        as_seconds(value, name="horizon")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 0.0, "0", -1, -0.1, "-1/3"])
def test_a_period_must_be_strictly_positive(value: object) -> None:
    with pytest.raises(ValueError, match=r"ctl\.period must be > 0"):
        as_period(value, name="ctl.period")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.05, "-1/3"])
def test_a_delay_must_not_be_negative(value: object) -> None:
    with pytest.raises(ValueError, match=r"command_link\.delay_s must be >= 0"):
        as_delay(value, name="command_link.delay_s")  # type: ignore[arg-type]


def test_a_zero_delay_is_allowed_and_negative_times_are_plain_seconds() -> None:
    assert as_delay(0) == 0
    assert as_seconds("-0.5") == Fraction(-1, 2)


@given(st.sampled_from(DECIMAL_STRINGS + FRACTION_STRINGS))
def test_periods_round_trip_exactly(text: str) -> None:
    assert as_period(text) == Fraction(text)


# -- fraction_gcd ------------------------------------------------------------------------------
def test_gcd_of_the_papers_schedule() -> None:
    assert fraction_gcd([Fraction("0.1"), Fraction(1), Fraction(3600)]) == Fraction(1, 10)
    assert fraction_gcd([Fraction("0.05"), Fraction("0.1"), Fraction(1, 3)]) == Fraction(1, 60)
    assert fraction_gcd([Fraction("0.25"), Fraction("0.1")]) == Fraction(1, 20)
    assert fraction_gcd([Fraction(2), Fraction(3)]) == 1
    assert fraction_gcd([Fraction(4), Fraction(6)]) == 2


def test_gcd_skips_zeros_and_needs_one_non_zero_value() -> None:
    assert fraction_gcd([Fraction(0), Fraction(1, 4)]) == Fraction(1, 4)
    with pytest.raises(ValueError, match="non-zero"):
        fraction_gcd([])
    with pytest.raises(ValueError, match="non-zero"):
        fraction_gcd([Fraction(0)])


@given(st.lists(positive_fractions, min_size=1, max_size=6))
def test_gcd_divides_every_value_and_is_the_greatest_such(values: list[Fraction]) -> None:
    tick = fraction_gcd(values)
    multiples = [value / tick for value in values]
    assert all(m.denominator == 1 for m in multiples)
    # Greatest: the integer multiples share no common factor (else tick * factor would divide).
    assert math.gcd(*(m.numerator for m in multiples)) == 1


@given(st.lists(positive_fractions, min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_gcd_ignores_order(values: list[Fraction], rng) -> None:
    shuffled = list(values)
    rng.shuffle(shuffled)
    assert fraction_gcd(shuffled) == fraction_gcd(values)


# -- Clock ---------------------------------------------------------------------------------
def test_clock_converts_both_ways_exactly() -> None:
    clock = Clock.for_times([Fraction("0.1"), Fraction(1), Fraction(1, 3)])
    assert clock.tick == Fraction(1, 30)
    assert clock.ticks("0.1") == 3
    assert clock.ticks(0.1) == 3
    assert clock.ticks(1) == 30
    assert clock.ticks("1/3") == 10
    assert clock.seconds(3) == Fraction(1, 10)
    assert clock.seconds_float(3) == 0.1
    assert clock.ticks(0) == 0


def test_a_time_that_is_not_a_whole_number_of_ticks_is_an_error() -> None:
    clock = Clock(Fraction(1, 10))
    with pytest.raises(ValueError, match=r"3/20 s is not a whole number of base ticks of 1/10 s"):
        clock.ticks("0.15")
    with pytest.raises(ValueError, match="not a whole number"):
        clock.ticks(Fraction(1, 3))


def test_ticks_before_the_horizon_never_include_the_horizon() -> None:
    clock = Clock(Fraction(1, 10))
    assert clock.ticks_before(1) == 10  # ticks 0..9 are before 1 s; 10 is the horizon itself
    assert clock.ticks_before("1.05") == 11  # 1.0 s < 1.05 s is still a tick before it


@given(st.sampled_from(DECIMAL_STRINGS + FRACTION_STRINGS), st.integers(0, 100_000))
def test_tick_seconds_never_drift(text: str, k: int) -> None:
    """k ticks are exactly k * tick; the float is the correctly rounded exact value."""
    tick = Fraction(text)
    clock = Clock(tick)
    assert clock.seconds(k) == k * tick
    assert clock.ticks(clock.seconds(k)) == k
    assert clock.seconds_float(k) == float(k * tick)


def test_clock_is_immutable() -> None:
    clock = Clock(Fraction(1, 10))
    with pytest.raises(AttributeError):
        clock.tick = Fraction(1)  # type: ignore[misc]


# -- steps before the horizon ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("period", "horizon", "steps"),
    [
        ("0.25", "1", 4),  # 0, .25, .5, .75 (the horizon is not a step)
        ("0.3", "1", 4),  # 0, .3, .6, .9 (the last partial period does not fire)
        ("0.25", "1.1", 5),  # 1.0 < 1.1 fires
        ("1/3", "1", 3),
        ("0.1", "3600", 36_000),
        ("1", "0", 0),
    ],
)
def test_step_count(period: str, horizon: str, steps: int) -> None:
    assert step_count(Fraction(period), Fraction(horizon)) == steps


@given(st.sampled_from(DECIMAL_STRINGS + FRACTION_STRINGS), positive_fractions)
def test_step_count_is_the_number_of_multiples_strictly_before_the_horizon(text: str, horizon: Fraction) -> None:
    period = Fraction(text)
    n = step_count(period, horizon)
    assert (n - 1) * period < horizon <= n * period


@given(
    period_ticks=st.integers(1, 10**6),
    numerator=st.integers(1, 10**6),
    denominator=st.integers(1, 10**9),
    first=st.integers(0, 10**6),
    count=st.integers(0, 300),
)
def test_step_times_in_numpy_equal_each_step_time(period_ticks, numerator, denominator, first, count) -> None:
    """StepClock.times (one NumPy pass) gives every step's correctly rounded time bit for bit."""
    clock = StepClock(period_ticks, Fraction(numerator, denominator))
    times = clock.times(first, first + count)
    assert times.dtype == np.float64 and times.shape == (count,)
    assert times.tolist() == [clock.seconds(k) for k in range(first, first + count)]


def test_step_times_beyond_exact_float_integers_are_computed_one_by_one() -> None:
    """Past 2**53 a float64 cannot hold the exact numerator: the times are still the correctly
    rounded seconds of each step (Python's exact int / int)."""
    clock = StepClock(3, Fraction(2**40 + 1, 7))
    times = clock.times(2**13 - 2, 2**13 + 3)
    assert times.tolist() == [clock.seconds(k) for k in range(2**13 - 2, 2**13 + 3)]
    assert times.tolist() == [float(Fraction(k * 3 * (2**40 + 1), 7)) for k in range(2**13 - 2, 2**13 + 3)]
