"""The trace-driven datacenter process on the kernel (SPEC 2.2-2.5)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from g2gsim.datacenter.commands import SetBatchSize, ShiftReplicas
from g2gsim.datacenter.config import ReplicaSchedule, TrainingRun
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.datacenter.state import DatacenterState
from g2gsim.kernel import Command, ComponentError, Simulation
from test_datacenter_fakes import FakeSource, Probe, Script, flat_trace, site


def run(config, *components, horizon: float = 3.0, seed: int = 0, source=None, name: str = "dc"):
    dc = OfflineDatacenter(name, config, source or FakeSource())
    result = Simulation([dc, *components], horizon, seed=seed).run()
    return dc, result


def failure(simulation: Simulation) -> ComponentError:
    """The ComponentError a run ends with."""
    try:
        simulation.run()
    except ComponentError as exc:
        return exc
    pytest.fail("the run did not fail")


def events(result, topic: str) -> pd.DataFrame:
    frame = result.events
    return frame[frame["topic"] == topic]


# -- tables, state, determinism -----------------------------------------------------------------


def test_state_table_and_published_state() -> None:
    seen: list[DatacenterState] = []
    dc, result = run(site(base_kw_per_phase=10), Probe("dc", lambda _dc, state: seen.append(state)))
    frame = result.tables["dc/state"]
    expected = ["time_s", "power_a_w", "power_b_w", "power_c_w"]
    for label in ("a", "b"):
        expected += [f"{label}.batch", f"{label}.replicas", f"{label}.itl_s", f"{label}.power_w"]
    assert list(frame.columns) == expected
    assert frame["time_s"].tolist() == [k / 10 for k in range(30)]
    assert (frame["a.batch"] == 32).all() and (frame["a.replicas"] == 40).all() and (frame["b.replicas"] == 10).all()
    state = seen[-1]
    assert state.site == "dc" and state.models == ("a", "b") and state.time_s == pytest.approx(2.9)
    assert state.power_w.tolist() == frame.iloc[-1][["power_a_w", "power_b_w", "power_c_w"]].tolist()
    assert state.phase_share.shape == (2, 3) and np.allclose(state.phase_share.sum(axis=1), 1.0)
    assert not state.batch.flags.writeable and not state.replicas.flags.writeable
    assert np.isfinite(frame["a.itl_s"]).all()
    summary = result.meta["summary"]["dc"]
    assert summary["data_source"] == "fake test data" and summary["synthetic"] is True
    assert summary["num_servers"] == 30 and summary["allocations_computed"] == 1
    assert dc.capacity_gpus == 240 and dc.power_factor == 0.95 and list(dc.specs) == ["a", "b"]


def test_runs_repeat_bit_for_bit_and_seeds_change_samples() -> None:
    config = site(noise_fraction=0.01, amplitude=(0.9, 1.1))
    dc = OfflineDatacenter("dc", config, FakeSource())
    simulation = Simulation([dc], 2.0, seed=3)
    first = simulation.run().tables["dc/state"]
    second = simulation.run().tables["dc/state"]
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    other = Simulation([OfflineDatacenter("dc", config, FakeSource())], 2.0, seed=4).run().tables["dc/state"]
    assert not np.array_equal(first["power_a_w"], other["power_a_w"])
    assert not np.array_equal(first["a.itl_s"], other["a.itl_s"])
    pinned = Simulation([OfflineDatacenter("dc", config, FakeSource(), seed=3)], 2.0, seed=99).run()
    pd.testing.assert_frame_equal(first, pinned.tables["dc/state"], check_exact=True)


# -- power --------------------------------------------------------------------------------------


def _check_power(base_w: float, training):
    def check(dc: OfflineDatacenter, state: DatacenterState) -> None:
        _servers, phases, power = dc.server_power()
        assert np.all(power >= 0.0) and np.all(state.power_w >= 0.0)
        overlay = base_w + training.power([state.time_s])[0] / 3
        for p in range(3):
            assert state.power_w[p] == pytest.approx(power[phases == p].sum() + overlay, rel=1e-12, abs=1e-6)
        assert state.model_power_w.sum() == pytest.approx(power.sum(), rel=1e-12, abs=1e-6)

    return check


@settings(max_examples=15)
@given(
    a=st.integers(0, 60),
    b=st.integers(0, 30),
    base=st.floats(0, 500),
    noise=st.sampled_from([0.0, 0.005, 0.3]),
    n_gpus=st.integers(1, 100),
    seed=st.integers(0, 1000),
)
def test_phase_power_is_server_power_plus_base_and_training(a, b, base, noise, n_gpus, seed) -> None:
    training = TrainingRun(trace=flat_trace(), n_gpus=n_gpus).at(0.5, 1.5)
    config = site({"a": a, "b": b}, base_kw_per_phase=base, noise_fraction=noise, training=training)
    probe = Probe("dc", _check_power(base * 1000.0, config.training))
    run(config, probe, horizon=2.0, seed=seed)
    assert probe.calls == 20


def test_zero_replicas_draw_only_base_and_training() -> None:
    training = TrainingRun(trace=flat_trace(), n_gpus=30, target_peak_w_per_gpu=300).at(1.0, 2.0)
    _, result = run(site({"a": 0, "b": 0}, base_kw_per_phase=2.0, training=training, noise_fraction=0.1))
    frame = result.tables["dc/state"]
    expected = np.where((frame["time_s"] >= 1.0) & (frame["time_s"] <= 2.0), 2000.0 + 3000.0, 2000.0)
    for phase in "abc":
        assert np.allclose(frame[f"power_{phase}_w"], expected)
    assert (frame["a.power_w"] == 0).all() and frame["a.itl_s"].isna().all()


def test_replicas_follow_the_rounded_schedule_in_whole_servers() -> None:
    schedule = ReplicaSchedule(initial=10).ramp_to(2, 1.0, 2.0)
    _, result = run(site({"a": 40, "b": schedule}))
    frame = result.tables["dc/state"].set_index("time_s")
    for t, replicas in frame["b.replicas"].items():
        requested = round(schedule.count(t))
        assert replicas == (math.ceil(requested * 4 / 8) * 8) // 4
    assert frame.loc[0.0, "b.replicas"] == 10 and frame.loc[2.5, "b.replicas"] == 2
    assert frame.loc[2.5, "b.power_w"] < frame.loc[0.0, "b.power_w"] / 3


def test_template_dt_is_checked() -> None:
    with pytest.raises(Exception, match=r"(?i)dt"):
        run(site(), source=FakeSource(dt_override=Fraction(1, 5)))


def test_no_latency_data_gives_nan_itl() -> None:
    _, result = run(site(), source=FakeSource(no_itl=True))
    assert result.tables["dc/state"]["a.itl_s"].isna().all()


# -- commands -----------------------------------------------------------------------------------


def test_set_batch_size_takes_effect_at_the_next_step() -> None:
    _, result = run(site(), Script([(1.0, SetBatchSize(batch={"a": 128}, target="dc"))]))
    batch = result.tables["dc/state"].set_index("time_s")["a.batch"]
    assert batch[1.0] == 32 and batch[1.1] == 128 and batch[2.9] == 128


def test_batch_ramp_up_reaches_the_target_at_the_right_time() -> None:
    command = SetBatchSize(batch={"a": 128, "b": 8}, ramp_up_rate={"a": 10.0, "b": 5.0}, target="dc")
    _, result = run(site(), Script([(1.0, command)]), horizon=12.0)
    frame = result.tables["dc/state"].set_index("time_s")
    # applied at t0 = 1.1 s from 32: batch(t) = min(128, 32 + floor(10 (t - t0))); 128 at 10.7 s
    for t in (1.1, 1.2, 1.19 + 0.01, 5.0, 10.6, 10.7, 11.9):
        t = round(t, 1)
        assert frame.loc[t, "a.batch"] == min(128, 32 + math.floor(10 * (Fraction(str(t)) - Fraction("1.1"))))
    assert frame.loc[10.6, "a.batch"] == 127 and frame.loc[10.7, "a.batch"] == 128
    assert frame.loc[1.1, "b.batch"] == 8  # lowering is immediate, whatever the rate
    # power rises smoothly with the blended operating point
    power = frame["a.power_w"]
    assert power[10.7] > power[1.0]
    done = events(result, "batch_ramp_done")
    assert done["time_s"].tolist() == [pytest.approx(10.7)]


def test_a_new_command_replaces_a_ramp_in_progress() -> None:
    plan = [
        (1.0, SetBatchSize(batch={"a": 128}, ramp_up_rate={"a": 10.0}, target="dc")),
        (2.0, SetBatchSize(batch={"a": 16}, target="dc")),
    ]
    _, result = run(site(), Script(plan), horizon=4.0)
    batch = result.tables["dc/state"].set_index("time_s")["a.batch"]
    assert batch[2.0] == 41 and batch[2.1] == 16 and batch[3.9] == 16


@pytest.mark.parametrize(
    ("command", "error", "pattern"),
    [
        (SetBatchSize(batch={"zz": 8}, target="dc"), KeyError, r"model 'zz'; models here: \['a', 'b'\]"),
        (SetBatchSize(batch={"a": 100}, target="dc"), ValueError, r"batch 100 .*allowed: \[8, 16, 32, 64, 128\]"),
        (ShiftReplicas(model="zz", delta=1, target="dc"), KeyError, r"models here: \['a', 'b'\]"),
    ],
)
def test_bad_commands_are_errors_naming_the_choices(command, error, pattern) -> None:
    caught = failure(Simulation([OfflineDatacenter("dc", site(), FakeSource()), Script([(0.5, command)])], 1.0))
    assert isinstance(caught.cause, error)
    assert caught.component == "dc" and caught.time_s == pytest.approx(0.6)
    assert re.search(pattern, str(caught.cause))


@dataclass(frozen=True, slots=True, kw_only=True)
class Reboot(Command):
    """A command no datacenter accepts."""


def test_unknown_command_type_is_a_type_error_naming_the_datacenter() -> None:
    dc = OfflineDatacenter("site-x", site(), FakeSource())

    class Sneak(Script):
        def control(self, tick):
            if tick == 0:
                self.ctx.lookup("site-x").deliver(Reboot())
            return []

    cause = failure(Simulation([dc, Sneak([])], 1.0)).cause
    assert isinstance(cause, TypeError)
    assert "OfflineDatacenter 'site-x' cannot handle Reboot" in str(cause)


def test_shift_replicas_accepted_and_refused_as_events() -> None:
    plan = [
        (0.5, ShiftReplicas(model="b", delta=6, target="dc")),  # 40 + 64 = 104 of 240 GPUs: fine
        (1.0, ShiftReplicas(model="b", delta=-50, target="dc")),  # below zero: refused
        (1.5, ShiftReplicas(model="a", delta=200, target="dc")),  # 240 + 64 > 240: refused
        (2.0, ShiftReplicas(model="b", delta=-16, target="dc")),  # exactly zero: fine
    ]
    _, result = run(site(), Script(plan))
    replicas = result.tables["dc/state"].set_index("time_s")["b.replicas"]
    assert replicas[0.5] == 10 and replicas[0.6] == 16 and replicas[2.0] == 16 and replicas[2.1] == 0
    refused = events(result, "shift_refused")
    assert refused["time_s"].tolist() == pytest.approx([1.1, 1.6])
    reasons = [payload["reason"] for payload in refused["payload"]]
    shifted = events(result, "replicas_shifted")
    assert shifted["time_s"].tolist() == pytest.approx([0.6, 2.1])
    assert result.meta["summary"]["dc"]["shifts_refused"] == 2
    assert "-34 replicas" in reasons[0]
    assert "would need 304 GPUs" in reasons[1] and "capacity 240 GPUs" in reasons[1]


def test_a_shift_is_refused_if_a_later_ramp_would_overflow() -> None:
    schedule = ReplicaSchedule(initial=40).ramp_to(180, 1.0, 2.0)  # 180 + 40 = 220 of 240 GPUs
    plan = [(0.2, ShiftReplicas(model="b", delta=10, target="dc"))]  # fits now, not at t = 2
    _, result = run(site({"a": schedule, "b": 10}), Script(plan))
    refused = events(result, "shift_refused")
    assert len(refused) == 1
