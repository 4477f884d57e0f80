"""Bulk reads of NumPy's scalar uniform / standard-normal calls (g2gsim.datacenter.stream_replay):
the same values and the same generator state as the calls themselves, or nothing at all."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from g2gsim.datacenter.stream_replay import interleaved_draws, ziggurat_tables


def scalar_calls(rng: np.random.Generator, normal: np.ndarray) -> np.ndarray:
    """What the bulk read stands for: one NumPy call per value."""
    return np.array([rng.standard_normal() if k else rng.random() for k in normal], dtype=np.float64)


def test_numpys_ziggurat_is_recovered() -> None:
    tables = ziggurat_tables()
    assert tables is not None, "the bulk path is off: NumPy's ziggurat was not recovered exactly"
    assert tables.width.shape == (256,) and tables.threshold.dtype == np.uint64
    assert tables.threshold[1] == 0  # the top layer always takes the slow path


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**63), st.integers(1, 3000), st.floats(0.0, 1.0), st.integers(0, 50))
def test_bulk_read_is_the_scalar_calls(seed: int, count: int, share: float, skip: int) -> None:
    """Any pattern of uniforms and normals, from any stream position: the same values, bit
    for bit, and the generator left where the calls leave it."""
    normal = np.random.default_rng(seed ^ 0x5EED).random(count) < share
    ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
    ours.standard_normal(skip)
    theirs.standard_normal(skip)
    values = interleaved_draws(ours, normal)
    assert values is not None
    assert np.array_equal(values, scalar_calls(theirs, normal))
    assert ours.bit_generator.state == theirs.bit_generator.state


def test_many_slow_normals_in_a_row() -> None:
    """Long runs of normals only (every slow ziggurat draw is in the way of the next one)."""
    normal = np.ones(20_000, dtype=bool)
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    assert np.array_equal(interleaved_draws(ours, normal), scalar_calls(theirs, normal))
    assert ours.bit_generator.state == theirs.bit_generator.state


def test_other_bit_generators_are_left_untouched() -> None:
    rng = np.random.Generator(np.random.MT19937(3))
    twin = np.random.Generator(np.random.MT19937(3))
    assert interleaved_draws(rng, np.array([False, True])) is None
    assert rng.random() == twin.random()
