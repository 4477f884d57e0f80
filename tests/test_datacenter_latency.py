"""Fleet-average ITL follows ``ITLMixtureModel.sample_avg`` draw for draw (SPEC 2.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlenergy.data.modeling import ITLMixtureModel

from g2gsim.datacenter.blocks import NormalStream
from g2gsim.datacenter.latency import FleetLatency, MixtureDraws, blend_moments, sample_fleet_itl
from g2gsim.datacenter.pool import OperatingPoint


def fit(scale: float = 0.01, loc: float = 0.003) -> ITLMixtureModel:
    return ITLMixtureModel(
        loc=loc,
        pi_steady=0.85,
        sigma_steady=0.3,
        scale_steady=scale,
        pi_stall=0.15,
        sigma_stall=0.6,
        scale_stall=4 * scale,
    )


FITS = [{8: fit(0.01), 16: fit(0.02)}, {8: fit(0.03)}, {8: None}]


def library(points: list[int], replicas: list[int], seed: int, steps: int) -> np.ndarray:
    """What calling the library per model, in label order, gives with one stream."""
    rng = np.random.default_rng(seed)
    out = np.full((steps, len(points)), math.nan)
    for k in range(steps):
        for m, (batch, n) in enumerate(zip(points, replicas)):
            model = FITS[m].get(batch)
            if model is not None and n > 0:
                out[k, m] = model.sample_avg(n_replicas=n, rng=rng)
    return out


@given(st.lists(st.integers(0, 400), min_size=3, max_size=3), st.integers(0, 2**31), st.booleans())
def test_fleet_latency_is_the_library_draw_for_draw(replicas: list[int], seed: int, second_batch: bool) -> None:
    points = [16 if second_batch else 8, 8, 8]
    latency = FleetLatency(FITS)
    latency.set_points([OperatingPoint(b, b) for b in points])
    latency.set_replicas(np.array(replicas))
    rng = np.random.default_rng(seed)
    ours = np.array([latency.sample(rng) for _ in range(4)])
    expected = library(points, replicas, seed, 4)
    assert np.array_equal(ours, expected, equal_nan=True)


def test_no_replicas_or_no_fit_is_nan_and_draws_nothing() -> None:
    latency = FleetLatency(FITS)
    latency.set_points([OperatingPoint(8, 8)] * 3)
    latency.set_replicas(np.array([0, 50, 50]))
    rng = np.random.default_rng(1)
    out = latency.sample(rng)
    assert math.isnan(out[0]) and math.isnan(out[2]) and out[1] > 0
    reference = np.random.default_rng(1)
    assert out[1] == FITS[1][8].sample_avg(n_replicas=50, rng=reference)
    assert rng.random() == reference.random()  # same stream position afterwards


def test_blend_moments_and_sampling() -> None:
    lo, hi = fit(0.01), fit(0.02)
    assert blend_moments(lo, hi, 0.0) == lo.mean_var()
    mean, var = blend_moments(lo, hi, 0.5)
    (m1, v1), (m2, v2) = lo.mean_var(), hi.mean_var()
    assert mean == pytest.approx((m1 + m2) / 2)
    assert var == pytest.approx((v1 + m1**2 + v2 + m2**2) / 2 - mean**2)
    rng = np.random.default_rng(0)
    draws = [sample_fleet_itl(lo, hi, 0.5, 1000, rng) for _ in range(2000)]
    assert np.mean(draws) == pytest.approx(mean, rel=0.01)
    small = [sample_fleet_itl(lo, hi, 0.5, 3, rng) for _ in range(4000)]
    assert np.mean(small) == pytest.approx(mean, rel=0.05)
    assert math.isnan(sample_fleet_itl(lo, None, 0.5, 3, rng))
    assert math.isnan(sample_fleet_itl(None, hi, 0.0, 3, rng))


def test_normal_regime_is_clipped_at_zero() -> None:
    wide = ITLMixtureModel(
        loc=0.0, pi_steady=0.5, sigma_steady=2.5, scale_steady=1e-4, pi_stall=0.5, sigma_stall=2.5, scale_stall=1e-4
    )
    latency = FleetLatency([{8: wide}])
    latency.set_points([OperatingPoint(8, 8)])
    latency.set_replicas(np.array([31]))
    rng = np.random.default_rng(0)
    assert all(latency.sample(rng)[0] >= 0.0 for _ in range(500))


@given(
    st.lists(st.integers(0, 60), min_size=3, max_size=3),
    st.integers(0, 2**31),
    st.floats(0.05, 0.95),
)
def test_blended_and_small_fleets_follow_sample_fleet_itl_draw_for_draw(
    replicas: list[int], seed: int, weight: float
) -> None:
    """During a batch ramp (a blended point) and for fleets of up to 30 replicas the site's
    precomputed samplers give sample_fleet_itl's values from the same stream positions."""
    points = [OperatingPoint(8, 16, weight), OperatingPoint(8, 8, 0.0), OperatingPoint(8, 8, 0.0)]
    latency = FleetLatency(FITS)
    latency.set_points(points)
    latency.set_replicas(np.array(replicas))
    rng = np.random.default_rng(seed)
    ours = np.array([latency.sample(rng) for _ in range(3)])
    reference = np.random.default_rng(seed)
    expected = np.full((3, 3), math.nan)
    for k in range(3):
        for m, (point, n) in enumerate(zip(points, replicas, strict=True)):
            lo, hi = FITS[m].get(point.lo), FITS[m].get(point.hi)
            if lo is not None and n > 0:
                expected[k, m] = sample_fleet_itl(lo, hi, point.weight, n, reference)
    assert np.array_equal(ours, expected, equal_nan=True)
    assert rng.random() == reference.random()  # same stream position afterwards


def test_mixture_draws_are_the_library_sample_one() -> None:
    model = fit(0.02)
    for seed in range(3):
        ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
        assert MixtureDraws(model).many(ours, 500) == [model.sample_one(theirs) for _ in range(500)]
        assert ours.random() == theirs.random()


@given(
    st.lists(st.integers(0, 45), min_size=3, max_size=3),
    st.integers(0, 2**31),
    st.floats(0.0, 0.95),
    st.integers(1, 40),
)
def test_rows_of_small_fleets_are_the_steps_one_by_one(
    replicas: list[int], seed: int, weight: float, steps: int
) -> None:
    """A block's rows (small fleets' draws read from the stream in bulk, or the steps' own
    when they cannot be) give sample's values step after step, and leave the stream where the
    steps leave it, blended or not."""
    points = [OperatingPoint(8, 16, weight), OperatingPoint(8, 8, 0.0), OperatingPoint(8, 8, 0.0)]
    latency = FleetLatency(FITS)
    latency.set_points(points)
    latency.set_replicas(np.array(replicas))
    rng, reference = np.random.default_rng(seed), np.random.default_rng(seed)
    rows = latency.block(NormalStream(rng, rewind=True), steps).rows
    if rows is None:
        rows = latency.sample_rows(rng, steps)
    expected = np.array([latency.sample(reference) for _ in range(steps)])
    assert rows.shape == (steps, 3)
    assert np.array_equal(rows, expected, equal_nan=True)
    assert rng.bit_generator.state == reference.bit_generator.state


@given(
    st.lists(st.integers(0, 45), min_size=3, max_size=3),
    st.integers(0, 2**31),
    st.floats(0.0, 0.95),
    st.integers(1, 40),
    st.data(),
)
def test_a_cut_block_gives_back_the_draws_of_its_unused_steps(
    replicas: list[int], seed: int, weight: float, steps: int, data: st.DataObject
) -> None:
    """A block's ITL drawn ahead (normal regime or small fleets read in bulk) and cut after
    `used` steps: its first rows are the steps' own, and the stream then goes on exactly
    where those steps leave it."""
    used = data.draw(st.integers(0, steps))
    points = [OperatingPoint(8, 16, weight), OperatingPoint(8, 8, 0.0), OperatingPoint(8, 8, 0.0)]
    latency = FleetLatency(FITS)
    latency.set_points(points)
    latency.set_replicas(np.array(replicas))
    rng, reference = np.random.default_rng(seed), np.random.default_rng(seed)
    block = latency.block(NormalStream(rng, rewind=True), steps)
    expected = np.array([latency.sample(reference) for _ in range(used)]).reshape(used, 3)
    if block.rows is not None:
        assert np.array_equal(block.rows[:used], expected, equal_nan=True)
        block.unused(used)
    else:  # steps that draw their own
        assert np.array_equal(
            np.array([latency.sample(rng) for _ in range(used)]).reshape(used, 3), expected, equal_nan=True
        )
    assert rng.bit_generator.state == reference.bit_generator.state
