"""Fidelity to OpenG2G in seed statistics: on the real ML.ENERGY-derived cache, with OpenG2G's
template length (600 s), g2gsim's mean over a few seeds of each published preset lies within
a few pooled seed spreads of OpenG2G's mean over five seeds.

The OpenG2G side is not run here (one OpenG2G hour takes ~45 s to minutes): its means and
spreads are read from the stored table of ``benchmarks/fidelity_seeds.py`` (its summary rows,
kept in ``tests/data/fidelity_seeds.json``), which also holds g2gsim's five-seed spread. The
bound for a (preset, metric) is |g2gsim mean - OpenG2G mean| <= (|stored gap| + MARGIN) pooled
spreads, where the stored gap is the five-seed gap of the table (in pooled spreads): a test
run with fewer seeds may land anywhere within the sampling error of its own mean, MARGIN
pooled spreads (a three-seed mean's standard error is 0.58 of a seed spread). The README's
Fidelity section names the cause of every stored gap above one pooled spread.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.runner import run_scenario

TABLE = Path(__file__).resolve().parent / "data" / "fidelity_seeds.json"
METRICS = (
    "violation_time_s",
    "integral_violation_pu_s",
    "worst_vmin",
    "worst_vmax",
    "mean_throughput_tps",
    "itl_deadline_fraction",
)
#: Pooled spreads allowed beyond the stored five-seed gap (sampling error of a few-seed mean).
MARGIN = 2.0
SEEDS = {
    "ieee13_baseline_notap": 3,
    "ieee13_baseline_tapchange": 3,
    "ieee13_rule_notap": 3,
    "ieee13_ofo_notap": 3,
    "ieee13_ofo_tapchange": 3,
    "ieee34_ofo_tapchange": 2,
    "ieee123_ofo_tapchange": 2,
}


def _table() -> dict[tuple[str, str], dict[str, float]]:
    rows = json.loads(TABLE.read_text())["summary"]
    return {(r["preset"], r["metric"]): r for r in rows}


def _g2gsim_mean(name: str, data: str, seeds: int) -> dict[str, float]:
    scenario = load_scenario(name).with_overrides(data=data)
    template = {f"sites.{i}.template_s": 600.0 for i in range(len(scenario.sites))}
    runs = [run_scenario(scenario.with_changes({**template, "seed": s}), plots=False).metrics for s in range(seeds)]
    assert all("v0.1 cache" in m["data_source"] for m in runs)
    return {k: sum(float(m[k]) for m in runs) / len(runs) for k in METRICS}


def test_the_stored_table_covers_every_published_preset_and_metric() -> None:
    table = _table()
    for name in SEEDS:
        for metric in METRICS:
            row = table[(name, metric)]
            assert row["openg2g_n"] >= 3 and row["g2gsim_600_n"] == 5 and row["g2gsim_n"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SEEDS))
def test_g2gsim_seed_mean_lies_within_the_pooled_spread_of_openg2g(name: str, reference_dir) -> None:
    table = _table()
    ours = _g2gsim_mean(name, str(reference_dir / "mlenergy-derived"), SEEDS[name])
    for metric in METRICS:
        row = table[(name, metric)]
        pooled = math.sqrt((row["openg2g_std"] ** 2 + row["g2gsim_600_std"] ** 2) / 2.0)
        gap = ours[metric] - row["openg2g_mean"]
        if pooled == 0.0:  # neither simulator moves from seed to seed (e.g. no ITL misses at all)
            assert gap == pytest.approx(0.0, abs=1e-12), (name, metric)
            continue
        allowed = abs(row["g2gsim_600_gap_pooled"]) + MARGIN
        assert abs(gap) <= allowed * pooled, (name, metric, ours[metric], row["openg2g_mean"], pooled)


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
