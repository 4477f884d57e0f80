"""Fidelity to the reference system: the IEEE 13 presets on the real ML.ENERGY-derived cache
land within a few percent of OpenG2G's published figures (full 3600 s horizon, seed 0).

The reference publishes one run per preset; g2gsim draws noise, amplitudes and ITL samples
from its own streams, so the uncontrolled cases (set by the power model, nearly
deterministic) must match tightly, while OFO's violation time, which moves by +-10% from seed
to seed, is compared as a mean over three seeds.
"""

from __future__ import annotations

import pytest

from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.runner import run_scenario

PUBLISHED = {
    # scenario: (violation time s, integral pu*s, worst vmin pu)
    "ieee13_baseline_notap": (993.8, 31.28, 0.9353),
    "ieee13_baseline_tapchange": (999.3, 21.66, None),  # the reference publishes no vmin here
    "ieee13_ofo_notap": (69.2, 0.0989, 0.9449),
}


def _mean_metrics(name: str, data: str, seeds: range) -> dict[str, float]:
    runs = [run_scenario(load_scenario(name).with_overrides(data=data, seed=s), plots=False).metrics for s in seeds]
    assert all("v0.1 cache" in m["data_source"] for m in runs)
    keys = ("violation_time_s", "integral_violation_pu_s", "worst_vmin")
    return {k: sum(float(m[k]) for m in runs) / len(runs) for k in keys}


@pytest.mark.parametrize("name", ["ieee13_baseline_notap", "ieee13_baseline_tapchange"])
def test_uncontrolled_ieee13_matches_the_published_reference(name: str, reference_dir) -> None:
    metrics = _mean_metrics(name, str(reference_dir / "mlenergy-derived"), range(1))
    violation, integral, vmin = PUBLISHED[name]
    assert metrics["violation_time_s"] == pytest.approx(violation, rel=0.02)
    assert metrics["integral_violation_pu_s"] == pytest.approx(integral, rel=0.10)
    if vmin is not None:
        assert metrics["worst_vmin"] == pytest.approx(vmin, abs=0.001)


def test_ofo_ieee13_matches_the_published_reference_on_average(reference_dir) -> None:
    metrics = _mean_metrics("ieee13_ofo_notap", str(reference_dir / "mlenergy-derived"), range(3))
    violation, integral, vmin = PUBLISHED["ieee13_ofo_notap"]
    assert metrics["violation_time_s"] == pytest.approx(violation, rel=0.15)
    assert metrics["integral_violation_pu_s"] == pytest.approx(integral, rel=0.15)
    assert metrics["worst_vmin"] == pytest.approx(vmin, abs=0.003)


def test_ofo_cuts_violations_by_an_order_of_magnitude_on_real_data(reference_dir) -> None:
    data = str(reference_dir / "mlenergy-derived")
    runs = {
        name: run_scenario(load_scenario(name).with_overrides(data=data, horizon_s=1500), plots=False).metrics
        for name in ("ieee13_baseline_notap", "ieee13_ofo_notap")
    }
    base, ofo = runs["ieee13_baseline_notap"], runs["ieee13_ofo_notap"]
    assert base["violation_time_s"] > 100
    assert ofo["integral_violation_pu_s"] <= 0.1 * base["integral_violation_pu_s"]
    assert ofo["itl_deadline_fraction"] <= 0.05  # the latency dual keeps misses rare
