"""OFO's sensitivity as a request/response through its links: instant links answer in the same
step, a delayed reply delays the first voltage-aware step by the delay, a lost request or reply
keeps the old H (the link records the drop) and the request is sent again after a timeout."""

from __future__ import annotations

from typing import Any

import numpy as np

from g2gsim.controllers import OFOBatchController, OFOConfig
from g2gsim.kernel import LinkSpec
from g2gsim.testing import FakeSite, FakeSpec, Probe, ScriptedGrid, run_components, three_phase


class CountingGrid(ScriptedGrid):
    """A fake grid whose k-th estimate is (k + 1) times the base H, so replies can be told apart."""

    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        super().estimate_sensitivity(site, delta_kw)
        return self.h * self.sensitivity_calls


def _loop(
    config: OFOConfig | None = None, *, steps: int = 8, **links: Any
) -> tuple[ScriptedGrid, OFOBatchController, Probe, Any]:
    specs = [FakeSpec("a"), FakeSpec("b", gpus_per_replica=4)]
    dc = FakeSite("dc", specs, replicas={"a": 10, "b": 5})
    grid = CountingGrid("grid", three_phase(["x", "y"]), lambda k: np.full(6, 0.94), sites={"dc": "x"})
    ofo = OFOBatchController("ofo", "dc", "grid", config, **links)
    probe = Probe(ofo, lambda c: (c.log_batch, c.sensitivity))
    return grid, ofo, probe, run_components([dc, grid, ofo, probe], steps)


def _event_times(result: Any, topic: str) -> list[float]:
    return result.events_of(topic)["time_s"].tolist()


def test_instant_links_answer_in_the_same_step() -> None:
    grid, _ofo, _, result = _loop()
    assert grid.sensitivity_calls == 1
    assert _event_times(result, "ofo_sensitivity") == [0.0]
    steps = result.events_of("ofo_step")["payload"]
    assert [p["sensitivity_estimated"] for p in steps] == [True] + [False] * 7


def test_a_delayed_reply_delays_the_first_voltage_aware_step_by_the_delay() -> None:
    delay = LinkSpec(delay_s=3)
    _, _, probe, delayed = _loop(command_link=delay)
    _, _, blind, _no_voltage = _loop(OFOConfig(voltage_gradient_scale=0.0), command_link=delay)
    _, _, _, instant = _loop()
    assert _event_times(instant, "ofo_sensitivity") == [0.0]
    assert _event_times(delayed, "ofo_sensitivity") == [3.0]  # requested at 0, answered at 3
    requests = delayed.commands[delayed.commands["kind"] == "SensitivityRequest"]
    assert requests["sent_s"].tolist() == [0.0] and requests["deliver_s"].tolist() == [3.0]
    # before H arrives the primal step has no voltage term: as with k_v = 0; from 3 s on it has
    x = [seen[0] for _, seen in probe.seen]
    x_blind = [seen[0] for _, seen in blind.seen]
    assert x[:3] == x_blind[:3]
    assert x[3] != x_blind[3]
    assert [seen[1] is None for _, seen in probe.seen] == [True] * 3 + [False] * 5


def test_a_delayed_measurement_delays_the_reply_too() -> None:
    _, _, _, result = _loop(measurement_link=LinkSpec(delay_s=2))
    # the first state arrives at 2, the request goes out then, the reply comes back at 2 + 2
    assert _event_times(result, "ofo_step")[0] == 2.0
    assert _event_times(result, "ofo_sensitivity") == [4.0]


def test_a_lost_request_keeps_the_old_estimate_and_is_asked_again_after_the_timeout() -> None:
    config = OFOConfig(sensitivity_timeout_s=3.0)
    grid, _ofo, probe, result = _loop(config, steps=10, command_link=LinkSpec(loss_probability=1.0))
    drops = result.events_of("link_drop")["payload"]
    assert [d["message"] for d in drops].count("SensitivityRequest") == 4  # at 0, 3, 6, 9
    assert _event_times(result, "ofo_sensitivity_timeout") == [3.0, 6.0, 9.0]
    assert grid.sensitivity_calls == 0
    assert all(seen[1] is None for _, seen in probe.seen)


def test_a_lost_reply_keeps_the_old_estimate_and_is_an_event() -> None:
    config = OFOConfig(sensitivity_update_interval=2, sensitivity_timeout_s=1.0)
    lossy = LinkSpec(loss_probability=0.4)
    grid, _, probe, result = _loop(config, steps=40, measurement_link=lossy)
    drops = result.events_of("link_drop")
    lost = drops[drops["payload"].map(lambda p: p["message"] == "SensitivityReply")]
    assert len(lost) > 0
    adopted = set(_event_times(result, "ofo_sensitivity"))
    assert len(adopted) < grid.sensitivity_calls  # some replies never arrived
    h_seen = {t: seen[1] for t, seen in probe.seen}
    checked = 0
    for t in lost["time_s"]:
        before = [h for s, h in h_seen.items() if s < t]
        if t in h_seen and before and before[-1] is not None and t not in adopted:
            assert np.array_equal(h_seen[t], before[-1])  # the old H is still in use
            checked += 1
    assert checked > 0
    assert len(result.events_of("ofo_sensitivity_timeout")) > 0
