"""The IEEE 13 site of SPEC 7 on real data sources: plausible power before the ramp-down."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from g2gsim.data import open_data_source
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.data.training import synthetic_training_trace
from g2gsim.datacenter.config import (
    DatacenterConfig,
    Facility,
    ModelDeployment,
    PowerAugmentation,
    ReplicaSchedule,
    TrainingRun,
)
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.kernel import Simulation
from g2gsim.metrics import performance_metrics
from g2gsim.resources import shared_reference_dir

REPLICAS = {
    "Llama-3.1-8B": 720,
    "Llama-3.1-70B": 180,
    "Llama-3.1-405B": 90,
    "Qwen3-30B-A3B": 480,
    "Qwen3-235B-A22B": 210,
}


def ieee13_site() -> DatacenterConfig:
    """7200 GPUs, five models ramping to 50 % over 2500-3000 s, 500 kW/phase, 2400-GPU training."""
    deployments = [
        ModelDeployment(
            spec=PAPER_MODELS[label],
            initial_batch=128,
            replicas=ReplicaSchedule(initial=n).ramp_to(n // 2, 2500, 3000),
        )
        for label, n in REPLICAS.items()
    ]
    training = TrainingRun(trace=synthetic_training_trace(), n_gpus=2400, target_peak_w_per_gpu=400.0)
    return DatacenterConfig(
        deployments=deployments,
        capacity_gpus=7200,
        facility=Facility(base_kw_per_phase=500.0),
        augmentation=PowerAugmentation(amplitude_scale_range=(0.98, 1.02), noise_fraction=0.005),
        training=training.at(1000, 2000),
        seed=0,
    )


def check_site(data, horizon: float = 60.0) -> pd.DataFrame:
    dc = OfflineDatacenter("dc", ieee13_site(), data)
    result = Simulation([dc], horizon).run()
    frame = result.tables["dc/state"]
    total_mw = frame[["power_a_w", "power_b_w", "power_c_w"]].sum(axis=1) / 1e6
    assert total_mw.between(3.0, 5.0).all(), (total_mw.min(), total_mw.max())
    phases = frame[["power_a_w", "power_b_w", "power_c_w"]].mean()
    assert phases.max() / phases.min() < 1.02  # phase-balanced pool
    for label, n in REPLICAS.items():
        assert (frame[f"{label}.replicas"] == n).all()  # all five counts fill whole servers
        itl = frame[f"{label}.itl_s"]
        assert np.isfinite(itl).all() and itl.between(0.001, 1.0).all()
    metrics = performance_metrics(frame, dc.specs)
    assert metrics["mean_throughput_tps"] > 1e5
    summary = result.meta["summary"]["dc"]
    assert summary["data_source"] == data.description and summary["num_servers"] == 900
    return frame


def test_ieee13_site_on_the_bundled_data() -> None:
    data = open_data_source(None)
    assert data.is_synthetic
    check_site(data)


@pytest.mark.shared
def test_ieee13_site_on_the_real_mlenergy_cache() -> None:
    reference = shared_reference_dir()
    if reference is None:
        pytest.skip("../shared/reference is not available")
    cache = Path(reference) / "mlenergy-derived"
    if not cache.is_dir():
        pytest.skip(f"{cache} is not available")
    data = open_data_source(cache)
    assert not data.is_synthetic
    check_site(data)
