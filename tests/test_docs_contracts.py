"""What a new user reads: the names the README promises exist, and the contracts and
caveats it points to are written where it says."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_study_function_the_readme_names_imports_from_g2gsim_studies() -> None:
    import g2gsim.studies

    sentence = _flat(README).split("are in `g2gsim.studies`")[0].rsplit(". ", 1)[-1]
    names = re.findall(r"`([a-z_]+)`", sentence)
    assert {"parameter_sensitivity", "site_sweep", "hosting_capacity", "seed_ensemble"} <= set(names)
    for name in [*names, "run_sweep", "Sweep", "load_results", "sensitivity_sweep", "ensemble_summary"]:
        assert callable(getattr(g2gsim.studies, name)), name
        assert name in g2gsim.studies.__all__


def test_the_datacenter_package_documents_its_mailbox_contract() -> None:
    import g2gsim.datacenter

    doc = _flat(g2gsim.datacenter.__doc__ or "")
    for promise in ('ctx.mailbox("state")', "box.publish(tick, state)", "power_w", "take_commands()", "applied_s"):
        assert promise in doc, promise
    assert "before the grid and the controllers of the same tick" in doc


def test_the_grid_documents_its_mailbox_contract() -> None:
    from g2gsim.grid import Grid

    doc = _flat(Grid.__doc__ or "")
    assert 'ctx.mailbox("state")' in doc and "publish" in doc and "What it reads" in doc


def test_the_readme_points_to_the_contracts_and_shows_nested_overrides_and_set() -> None:
    text = _flat(README)
    assert "`g2gsim.datacenter`" in text and "help(g2gsim.grid.Grid)" in text
    assert '"sites.0.models.0.replicas": 360' in text
    assert "--set sites.0.models.0.replicas=360" in text
    assert "applied_s" in text and "deliver_s" in text


def test_ofo_says_its_step_sizes_act_per_control_step() -> None:
    from g2gsim.controllers.ofo import OFOConfig

    assert "per control step" in _flat(OFOConfig.__doc__ or "")
    assert "per control step" in OFOConfig.model_fields["primal_step_size"].description
    assert "act once per control step" in _flat(README)


def test_the_multirate_benchmark_reports_what_the_metrics_did() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_multirate", ROOT / "benchmarks" / "bench_multirate.py")
        assert spec is not None and spec.loader is not None
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    row = {
        "periods_s": (0.1, 0.1, 10.0),
        "delay_s": 0.0,
        "tick_s": "1/10",
        "steps": {"total": 10},
        "n_solves": 5,
        "wall_s": 1.0,
        "wall_s_per_hour": 6.0,
        "us_per_step": 1.0,
        "us_per_grid_step": 1.0,
        "metrics": {
            "violation_time_s": 12.5,
            "integral_violation_pu_s": 0.01,
            "worst_vmin": 0.94,
            "mean_throughput_tps": 3.86e6,
            "itl_deadline_fraction": 0.0,
        },
    }
    table = bench.periods_table([row])
    assert "viol s" in table and "M tok/s" in table and "3.86" in table and "12.5" in table


def test_voltage_metrics_score_a_window_and_every_metric_is_listed() -> None:
    import inspect

    from g2gsim.metrics import METRICS, voltage_metrics

    assert {"start_s", "end_s"} <= set(inspect.signature(voltage_metrics).parameters)
    missing = [key for key in METRICS if f"`{key}`" not in README]
    assert missing == []


@pytest.mark.parametrize("module", ["g2gsim.studies", "g2gsim.scenarios", "g2gsim.datacenter", "g2gsim.grid"])
def test_public_packages_import_cleanly(module: str) -> None:
    assert importlib.import_module(module).__doc__
