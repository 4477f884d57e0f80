"""Server pool, allocation and vectorised fleet power (SPEC 2.2, 2.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from g2gsim.datacenter.pool import (
    PHASES,
    AllocationCache,
    FleetPower,
    OperatingPoint,
    OversubscribedError,
    ServerPool,
    TemplateBank,
    split_evenly,
)


def make_pool(num_servers: int, labels=("a", "b", "c"), seed: int = 0, length: int = 50, amp=(0.9, 1.1)) -> ServerPool:
    return ServerPool.build(
        num_servers=num_servers,
        gpus_per_server=8,
        labels=labels,
        template_length=length,
        amplitude_range=amp,
        rng=np.random.default_rng(seed),
    )


def reference_allocation(pool: ServerPool, demand: dict[str, int]) -> dict[str, list[int]]:
    """The allocation rule written as the plain loop it describes (OpenG2G's formulation)."""
    claimed = np.zeros(pool.num_servers, dtype=bool)
    result = {}
    for label in sorted(demand):
        k = math.ceil(demand[label] / pool.gpus_per_server) if demand[label] > 0 else 0
        groups: list[list[int]] = [[], [], []]
        for index in pool.priority[label]:
            groups[pool.phase[index]].append(int(index))
        cursors, picked, phase = [0, 0, 0], [], 0
        while len(picked) < k:
            for attempt in range(3):
                p = (phase + attempt) % 3
                while cursors[p] < len(groups[p]) and claimed[groups[p][cursors[p]]]:
                    cursors[p] += 1
                if cursors[p] < len(groups[p]):
                    server = groups[p][cursors[p]]
                    claimed[server] = True
                    picked.append(server)
                    phase = (p + 1) % 3
                    break
            else:
                raise OversubscribedError(label)
        result[label] = picked
    return result


demands = st.fixed_dictionaries({label: st.integers(0, 120) for label in ("a", "b", "c")})


def test_split_evenly() -> None:
    assert split_evenly(10) == [4, 3, 3]
    assert split_evenly(2) == [1, 1, 0]
    assert sum(split_evenly(901)) == 901


@given(st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_pool_layout_is_balanced_and_in_range(num_servers: int, seed: int) -> None:
    pool = make_pool(num_servers, seed=seed)
    counts = np.bincount(pool.phase, minlength=3)
    assert counts.max() - counts.min() <= 1 and counts.sum() == num_servers
    assert np.all((pool.stagger >= 0) & (pool.stagger < 50))
    assert np.all((pool.amplitude >= 0.9) & (pool.amplitude <= 1.1))
    for order in pool.priority.values():
        assert sorted(order.tolist()) == list(range(num_servers))


def test_pool_is_deterministic_given_the_stream() -> None:
    one, two = make_pool(30, seed=4), make_pool(30, seed=4)
    assert np.array_equal(one.phase, two.phase) and np.array_equal(one.stagger, two.stagger)
    assert all(np.array_equal(one.priority[k], two.priority[k]) for k in one.priority)
    assert not np.array_equal(make_pool(30, seed=5).priority["a"], one.priority["a"])


@given(st.integers(1, 60), st.integers(0, 1000), demands)
def test_allocation_matches_the_reference_loop(num_servers: int, seed: int, demand: dict[str, int]) -> None:
    pool = make_pool(num_servers, seed=seed)
    try:
        expected = reference_allocation(pool, demand)
    except OversubscribedError:
        with pytest.raises(OversubscribedError, match=r"needs \d+ servers .* unclaimed"):
            pool.allocate(demand, {"a": 1, "b": 1, "c": 1})
        return
    allocation = pool.allocate(demand, {"a": 1, "b": 1, "c": 1})
    for m, label in enumerate(allocation.labels):
        assert allocation.servers[m].tolist() == expected[label]


@given(st.integers(3, 80), st.integers(0, 1000), demands, st.sampled_from([1, 2, 4, 8]))
def test_allocation_properties(num_servers: int, seed: int, demand: dict[str, int], per_replica: int) -> None:
    pool = make_pool(num_servers, seed=seed)
    gpus = {label: n * per_replica for label, n in demand.items()}
    needed = sum(math.ceil(g / 8) for g in gpus.values())
    if needed > num_servers:
        with pytest.raises(OversubscribedError):
            pool.allocate(gpus, dict.fromkeys(gpus, per_replica))
        return
    allocation = pool.allocate(gpus, dict.fromkeys(gpus, per_replica))
    free = np.bincount(pool.phase, minlength=3)
    all_servers = np.concatenate(allocation.servers)
    assert np.unique(all_servers).size == all_servers.size  # nobody shares a server
    for m, label in enumerate(allocation.labels):
        k = math.ceil(gpus[label] / 8)
        counts = allocation.phase_counts[m]
        assert counts.sum() == k  # exactly what it asks for, never more
        if free.min() >= math.ceil(k / 3):  # the pool allows a balanced pick
            assert counts.max() - counts.min() <= 1
        free = free - counts
        assert allocation.active_replicas[m] == (k * 8) // per_replica
        assert allocation.active_replicas[m] >= demand[label]
        if k:
            assert allocation.phase_share[m].sum() == pytest.approx(1.0)
        else:
            assert allocation.phase_share[m].tolist() == [1 / 3] * 3
    assert np.array_equal(allocation.flat_servers, all_servers)
    assert np.array_equal(allocation.flat_key, allocation.flat_model * 3 + pool.phase[all_servers])


def test_allocation_cache_computes_once_per_server_layout() -> None:
    pool = make_pool(20)
    cache = AllocationCache(pool, ["b", "a", "c"], {"a": 1, "b": 2, "c": 8}, size=2)
    first = cache.get((8, 4, 1))
    assert cache.get((8, 4, 1)) is first and cache.computed == 1 and cache.hits == 1
    assert cache.get((1, 1, 1)) is first and cache.computed == 1  # the same servers: 1, 1, 1
    cache.get((9, 1, 1))
    cache.get((2, 2, 2))
    assert cache.get((8, 4, 1)) is not first and cache.computed == 4  # evicted (size 2)
    assert first.n_servers.tolist() == [1, 1, 1]


@given(st.integers(0, 500), st.tuples(st.integers(0, 40), st.integers(0, 20), st.integers(0, 5)))
def test_counts_that_need_the_same_servers_share_the_allocation_they_would_get(seed, replicas) -> None:
    pool = make_pool(30, seed=seed)
    per_replica = {"a": 1, "b": 2, "c": 8}
    cache = AllocationCache(pool, ["a", "b", "c"], per_replica)
    servers = cache.servers(replicas)
    if sum(servers) > 30:
        return
    fullest = tuple(k * 8 // per_replica[label] for k, label in zip(servers, "abc"))  # most replicas on them
    assert cache.servers(fullest) == servers
    shared = cache.get(fullest)
    assert cache.get(replicas) is shared and cache.computed == 1
    alone = pool.allocate({label: n * per_replica[label] for label, n in zip("abc", replicas)}, per_replica)
    for field in ("phase_counts", "active_replicas", "phase_share", "flat_servers", "flat_model", "flat_key"):
        assert np.array_equal(getattr(shared, field), getattr(alone, field))


@given(st.integers(1, 40), st.integers(0, 30), st.integers(0, 200))
def test_bank_rows_replay_the_template_periodically(length: int, n_steps: int, stagger: int) -> None:
    template = np.arange(length, dtype=float) + 1.0
    bank = TemplateBank({("a", 8): template, ("a", 16): template * 2}, n_steps)
    offsets = bank.offsets("a", 16, np.array([stagger]))
    for step in range(n_steps):
        assert bank.data[offsets[0] + step] == 2 * template[(step + stagger) % length]
    assert np.array_equal(bank.template("a", 8), template)


def test_bank_rejects_bad_templates_and_clips_negative_power() -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        TemplateBank({("a", 8): np.zeros((2, 2))}, 3)
    with pytest.raises(ValueError, match="non-finite"):
        TemplateBank({("a", 8): np.array([1.0, np.nan])}, 3)
    assert TemplateBank({("a", 8): np.array([-1.0, 2.0])}, 1).template("a", 8).tolist() == [0.0, 2.0]


def test_operating_point_brackets_unknown_batches() -> None:
    known = [8, 16, 64]
    assert OperatingPoint.of(16, known) == OperatingPoint(16, 16, 0.0)
    assert OperatingPoint.of(40, known) == OperatingPoint(16, 64, 0.5)
    assert OperatingPoint.of(4, known) == OperatingPoint(8, 8, 0.0)
    assert OperatingPoint.of(100, known) == OperatingPoint(64, 64, 0.0)


def _fleet(seed: int, demand: dict[str, int], noise: float, length: int = 40, n_steps: int = 30, scale: float = 1.0):
    pool = make_pool(30, labels=("a", "b"), seed=seed, length=length)
    rng = np.random.default_rng(seed + 1)
    templates = {(label, batch): scale * rng.uniform(0, 700, length) for label in ("a", "b") for batch in (8, 16)}
    bank = TemplateBank(templates, n_steps)
    allocation = pool.allocate({k: v * 2 for k, v in demand.items()}, {"a": 2, "b": 2})
    points = [OperatingPoint(8, 8), OperatingPoint(8, 16, 0.25)]
    return pool, bank, allocation, FleetPower(pool, allocation, bank, points, noise), templates


@given(
    st.integers(0, 500),
    st.fixed_dictionaries({"a": st.integers(0, 40), "b": st.integers(0, 40)}),
    st.sampled_from([0.0, 0.01, 0.5]),
    st.integers(0, 29),
    st.floats(0, 1e6),
    st.sampled_from([1.0, 1e-3]),
)
def test_phase_power_is_the_sum_of_server_powers_plus_overlay(seed, demand, noise, step, overlay, scale) -> None:
    pool, _bank, allocation, fleet, templates = _fleet(seed, demand, noise, scale=scale)
    sums = fleet.step(step, np.random.default_rng(seed), overlay)
    servers = fleet.last_server_power
    assert np.all(servers >= 0.0)
    phases = pool.phase[allocation.flat_servers]
    for p in range(PHASES):
        assert sums[p] == pytest.approx(servers[phases == p].sum() + overlay, rel=1e-12, abs=1e-6)
    for m in range(2):
        assert sums[PHASES + m] == pytest.approx(servers[allocation.flat_model == m].sum(), rel=1e-12, abs=1e-6)
    if noise == 0.0:  # exact formula, including the 25 % blend of model b
        stagger = pool.stagger[allocation.flat_servers]
        gain = 8 * pool.amplitude[allocation.flat_servers]
        for j, m in enumerate(allocation.flat_model):
            index = (step + stagger[j]) % 40
            if m == 0:
                expected = templates[("a", 8)][index]
            else:
                expected = 0.75 * templates[("b", 8)][index] + 0.25 * templates[("b", 16)][index]
            assert servers[j] == pytest.approx(expected * gain[j], rel=1e-12)


def test_zero_replicas_draw_only_the_overlay() -> None:
    *_, fleet, _ = _fleet(0, {"a": 0, "b": 0}, 0.1)
    sums = fleet.step(3, np.random.default_rng(0), 1234.5)
    assert sums.tolist() == [1234.5, 1234.5, 1234.5, 0.0, 0.0]


def test_noise_follows_the_spec_formula_below_one_watt() -> None:
    # Tiny templates take the general path: N(0,1) * nf * max(P, 1), clipped at 0.
    pool, bank, allocation, fleet, _templates = _fleet(3, {"a": 8, "b": 0}, 0.5, scale=1e-4)
    rng, same = np.random.default_rng(9), np.random.default_rng(9)
    fleet.server_power(2, rng)
    clean = FleetPower(pool, allocation, bank, [OperatingPoint(8, 8), OperatingPoint(8, 16, 0.25)], 0.0)
    base = clean.server_power(2, None).copy()
    expected = np.maximum(base + same.normal(0.0, 0.5, base.size) * np.maximum(base, 1.0), 0.0)
    assert np.allclose(fleet.last_server_power, expected, rtol=1e-12, atol=1e-12)
