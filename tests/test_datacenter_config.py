"""Site configuration: replica schedules, training runs and every validation error (SPEC 2.1)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from g2gsim.data.training import TrainingTrace
from g2gsim.datacenter.config import (
    DatacenterConfig,
    Facility,
    ModelDeployment,
    PowerAugmentation,
    ReplicaRamp,
    ReplicaSchedule,
    TrainingRun,
    TrainingSchedule,
)
from test_datacenter_fakes import flat_trace, make_spec, site

# -- replica schedules ---------------------------------------------------------------------


def replica_table(config: DatacenterConfig, n_steps: int, period: Fraction) -> np.ndarray:
    """Test oracle: round(count_exact(k * period)) per step and model (one row per step)."""
    return np.array(
        [[round(d.replicas.count_exact(k * period)) for d in config.deployments] for k in range(n_steps)],
        dtype=np.int64,
    ).reshape(n_steps, len(config.deployments))


def test_count_before_inside_after_a_ramp() -> None:
    schedule = ReplicaSchedule(initial=720).ramp_to(360, 2500, 3000)
    assert schedule.count(0) == 720
    assert schedule.count(2500) == 720
    assert schedule.count(2750) == pytest.approx(540)
    assert schedule.count(3000) == 360
    assert schedule.count(5000) == 360
    assert round(schedule.count(2500.1)) == 720


def test_ramps_sorted_touching_allowed_and_chained_levels() -> None:
    schedule = ReplicaSchedule(initial=10).ramp_to(30, 200, 300).ramp_to(20, 100, 200)
    assert [r.t_start_s for r in schedule.ramps] == [100, 200]
    assert schedule.count(150) == pytest.approx(15)
    assert schedule.count(200) == 20
    assert schedule.count(250) == pytest.approx(25)
    assert schedule.boundaries() == (100, 200, 300)
    assert schedule.max_count() == 30


def test_zero_length_ramp_is_a_step() -> None:
    schedule = ReplicaSchedule(initial=5).ramp_to(9, 10, 10)
    assert schedule.count(9.99) == 5
    assert schedule.count(10) == 9
    assert list(schedule.counts([9.99, 10, 11])) == [5, 9, 9]


def test_overlapping_ramps_are_an_error() -> None:
    with pytest.raises(ValidationError, match=r"overlap"):
        ReplicaSchedule(initial=1).ramp_to(2, 0, 10).ramp_to(3, 5, 20)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target": -1, "t_start_s": 0, "t_end_s": 1}, "target"),
        ({"target": 1, "t_start_s": -1, "t_end_s": 1}, "t_start_s"),
        ({"target": 1, "t_start_s": 5, "t_end_s": 1}, "t_end_s = 1"),
        ({"target": 1, "t_start_s": 0, "t_end_s": float("inf")}, "t_end_s"),
    ],
)
def test_ramp_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ReplicaRamp(**kwargs)


def test_negative_initial_count_is_an_error() -> None:
    with pytest.raises(ValidationError, match=r"initial[\s\S]*greater than or equal to 0[\s\S]*input_value=-3"):
        ReplicaSchedule(initial=-3)


ramps = st.lists(st.tuples(st.integers(0, 1000), st.floats(0, 1000), st.floats(0, 200)), min_size=0, max_size=4)


def _schedule(initial: int, spec: list[tuple[int, float, float]]) -> ReplicaSchedule:
    schedule = ReplicaSchedule(initial=initial)
    t = 0.0
    for target, gap, length in spec:
        start = t + gap
        schedule = schedule.ramp_to(target, start, start + length)
        t = start + length
    return schedule


@given(st.integers(0, 1000), ramps, st.lists(st.floats(0, 5000), min_size=1, max_size=30))
def test_vectorised_counts_equal_scalar_counts(initial: int, spec, times) -> None:
    schedule = _schedule(initial, spec)
    assert list(schedule.counts(np.array(times))) == [schedule.count(t) for t in times]


@given(st.integers(0, 1000), ramps, st.data())
def test_a_ramp_is_monotone_between_its_ends(initial: int, spec, data) -> None:
    schedule = _schedule(initial, spec)
    for ramp in schedule.ramps:
        t = np.sort(np.array(data.draw(st.lists(st.floats(ramp.t_start_s, ramp.t_end_s), min_size=2, max_size=20))))
        counts = schedule.counts(t)
        start, end = schedule.count(ramp.t_start_s), float(ramp.target)
        low, high = min(start, end), max(start, end)
        assert np.all((counts >= low - 1e-9) & (counts <= high + 1e-9))
        steps = np.diff(counts)
        assert np.all(steps >= -1e-9) if end >= start else np.all(steps <= 1e-9)


# -- deployments, facility, augmentation ----------------------------------------------------


def test_initial_batch_must_be_feasible() -> None:
    with pytest.raises(ValidationError, match=r"initial_batch = 100 .*allowed: \[8, 16, 32, 64, 128\]"):
        ModelDeployment(spec=make_spec("a"), initial_batch=100, replicas=3)


def test_integer_replicas_mean_a_constant_schedule() -> None:
    deployment = ModelDeployment(spec=make_spec("a"), initial_batch=8, replicas=3)
    assert deployment.replicas == ReplicaSchedule(initial=3)
    assert deployment.label == "a"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"gpus_per_server": 0}, r"gpus_per_server[\s\S]*greater than or equal to 1[\s\S]*input_value=0"),
        ({"power_factor": 0.0}, r"power_factor[\s\S]*greater than 0[\s\S]*input_value=0.0"),
        ({"power_factor": 1.2}, r"power_factor[\s\S]*less than or equal to 1[\s\S]*input_value=1.2"),
        ({"base_kw_per_phase": -1.0}, r"base_kw_per_phase[\s\S]*greater than or equal to 0"),
    ],
)
def test_facility_validation(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern):
        Facility(**kwargs)


def test_facility_defaults() -> None:
    facility = Facility()
    assert (facility.gpus_per_server, facility.base_kw_per_phase, facility.power_factor) == (8, 0.0, 0.95)


@pytest.mark.parametrize("bounds", [(1.1, 1.0), (0.0, 1.0), (-1.0, 1.0), (1.0, float("nan"))])
def test_amplitude_range_validation(bounds: tuple[float, float]) -> None:
    with pytest.raises(ValidationError, match=r"amplitude_scale_range = \(.*\) must satisfy 0 < lo <= hi"):
        PowerAugmentation(amplitude_scale_range=bounds)


def test_noise_fraction_validation() -> None:
    with pytest.raises(ValidationError, match=r"noise_fraction[\s\S]*greater than or equal to 0"):
        PowerAugmentation(noise_fraction=-0.1)
    assert PowerAugmentation().amplitude_scale_range == (1.0, 1.0)


def test_configs_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Facility().gpus_per_server = 4  # type: ignore[misc]


# -- training --------------------------------------------------------------------------------


def test_training_trace_is_rescaled_to_the_target_peak_and_replayed() -> None:
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    trace = TrainingTrace(t + 50.0, np.array([100.0, 200.0, 100.0, 50.0, 100.0]))
    run = TrainingRun(trace=trace, n_gpus=10, target_peak_w_per_gpu=400.0)
    assert run.period_s == 4.0
    assert run.power(1.0) == pytest.approx(4000.0)
    assert run.power(5.0) == pytest.approx(4000.0)  # one period later
    assert run.power(0.5) == pytest.approx(10 * 300.0)


def test_training_schedule_composes_sorted_and_is_zero_outside_windows() -> None:
    late = TrainingRun(trace=flat_trace(), n_gpus=10).at(100, 200)
    early = TrainingRun(trace=flat_trace(), n_gpus=20, target_peak_w_per_gpu=300).at(0, 50)
    schedule = late | early
    assert isinstance(schedule, TrainingSchedule)
    assert [e.t_start_s for e in schedule.entries] == [0, 100]
    power = schedule.power([0.0, 50.0, 75.0, 100.0, 200.0, 200.1])
    assert list(power) == pytest.approx([6000, 6000, 0, 4000, 4000, 0])
    assert len(schedule) == 2


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"n_gpus": 0}, r"n_gpus[\s\S]*greater than 0"),
        ({"n_gpus": 8, "target_peak_w_per_gpu": 0.0}, r"target_peak_w_per_gpu[\s\S]*greater than 0"),
    ],
)
def test_training_run_validation(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern):
        TrainingRun(trace=flat_trace(), **kwargs)


def test_training_window_validation_and_flat_zero_trace() -> None:
    with pytest.raises(ValidationError, match=r"t_end_s = 1.0 must be >= t_start_s = 2.0"):
        TrainingRun(trace=flat_trace(), n_gpus=1).at(2, 1)
    with pytest.raises(ValidationError, match=r"peak is 0.0 W"):
        TrainingRun(trace=flat_trace(0.0), n_gpus=1)


# -- the site --------------------------------------------------------------------------------


def test_deployments_are_sorted_and_unique() -> None:
    config = site({"zeta": 1, "alpha": 2})
    assert config.labels == ("alpha", "zeta")
    assert list(config.specs) == ["alpha", "zeta"]
    with pytest.raises(ValidationError, match=r"repeated labels: \['a'\]"):
        DatacenterConfig(
            deployments=[ModelDeployment(spec=make_spec("a"), initial_batch=8, replicas=1)] * 2, capacity_gpus=8
        )
    with pytest.raises(KeyError, match=r"models: \['alpha', 'zeta'\]"):
        config.deployment("beta")


def test_capacity_is_checked_at_start() -> None:
    with pytest.raises(ValidationError, match=r"at t = 0 s the replicas need 250 GPUs .* capacity_gpus = 240"):
        site({"a": 210, "b": 10})


def test_capacity_is_checked_at_every_ramp_boundary() -> None:
    schedule = ReplicaSchedule(initial=40).ramp_to(100, 100, 200).ramp_to(250, 300, 400)
    with pytest.raises(ValidationError, match=r"at t = 400 s the replicas need 290 GPUs .*a 250 x 1, b 10 x 4"):
        site({"a": schedule, "b": 10})


def test_capacity_counts_whole_servers() -> None:
    # 53 GPUs fit 56, but 9 one-GPU replicas need 2 servers and 11 four-GPU ones 6: 8 > 7.
    with pytest.raises(ValidationError, match=r"need 8 servers of 8 GPUs .* the site has 7"):
        site({"a": 9, "b": 11}, capacity_gpus=56)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValidationError, match=r"capacity_gpus[\s\S]*greater than 0"):
        site(capacity_gpus=0)


def test_replica_table_rounds_exact_half_counts_to_even() -> None:
    # 0 -> 3 over [0.1, 3.1] s at steps of 0.1 s: count(k / 10) = (k - 1) / 10, ties at 0.5, 1.5, 2.5
    config = site({"a": ReplicaSchedule(initial=0).ramp_to(3, 0.1, 3.1), "b": 1})
    table = replica_table(config, 40, Fraction(1, 10))
    exact = [round(max(Fraction(k - 1, 10), Fraction(0)) if k <= 31 else Fraction(3)) for k in range(40)]
    assert table[:, 0].tolist() == exact
    assert table[6, 0] == 0 and table[16, 0] == 2 and table[26, 0] == 2
    assert table[:, 1].tolist() == [1] * 40


def test_exact_count_agrees_with_float_count() -> None:
    schedule = ReplicaSchedule(initial=180).ramp_to(90, 2500, 3000).ramp_to(100, 3000, 3000.5)
    for t in ("0", "2500", "2525", "2777.7", "3000", "3000.2", "4000"):
        assert float(schedule.count_exact(Fraction(t))) == pytest.approx(schedule.count(float(t)), abs=1e-9)
    assert schedule.count_exact(Fraction(2525)) == Fraction(351, 2)
