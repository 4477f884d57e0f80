"""The ML.ENERGY backend on a small generated benchmark copy in the mlenergy-data 0.4.0 layout.

The fixture writes ``runs/llm.parquet`` (one row per run, every ``LLMRun`` field) and per run
``results.json`` (requests with ITLs, a per-GPU power timeline with steady-state bounds) and
``prometheus.json``. Model A: 1 GPU, batches 8-64, 3 seeds, plus an unstable run at 128.
Model B: 2 GPUs, batches 8-32, 2 seeds. Power rises with batch; the expected values below
are computed from the generated samples, not through the library.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlenergy.data.records.runs import LLMRun, LLMRuns

from g2gsim.data import MissingDataError, open_data_source
from g2gsim.data.caches import V02CacheSource, write_v02_cache
from g2gsim.data.fits import FitWarning
from g2gsim.data.mlenergy import MLEnergySource, normalise_precision
from g2gsim.data.spec import ModelSpec

T0 = 1_700_000_000.0  # unix time of the first run's start
SAMPLE_S = 0.25  # power sampling period of the generated timelines
PAD = 8  # samples written before and after the steady-state window
REQUESTS = 40
TOKENS = 30


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def per_gpu_base_w(batch: int) -> float:
    return 250.0 + 350.0 * _sigmoid(1.2 * (math.log2(batch) - 5))


def itl_mean_s(batch: int) -> float:
    return 0.015 + 0.03 * _sigmoid(math.log2(batch) - 5.5)


def throughput_tps(batch: int, seed: int) -> float:
    return (200.0 + 4000.0 * _sigmoid(0.9 * (math.log2(batch) - 5))) * (1 + 0.01 * seed)


@dataclass(frozen=True)
class ModelPlan:
    model_id: str
    task: str
    gpus: int
    batches: tuple[int, ...]
    seeds: tuple[int, ...]
    unstable_batches: tuple[int, ...] = ()


PLANS = (
    ModelPlan("org/model-a", "lm-arena-chat", 1, (8, 16, 32, 64), (0, 1, 2), unstable_batches=(128,)),
    ModelPlan("org/model-b", "gpqa", 2, (8, 16, 32), (0, 1)),
)


@dataclass
class Bench:
    """The generated folder and, per (model_id, batch), the raw steady-state samples of each run."""

    root: Path
    timelines: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    itl: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    avg_power: dict[tuple[str, int], list[float]] = field(default_factory=dict)


def _write_run(bench: Bench, plan: ModelPlan, batch: int, seed: int, start: float, stable: bool) -> dict:
    org, model = plan.model_id.split("/")
    config = f"num_gpus+{plan.gpus}+max_num_seqs+{batch}+max_num_batched_tokens+2048+num_request_repeats+1+seed+{seed}"
    rel_dir = Path("llm/h100/current/run/llm") / plan.task / "results" / org / model / "H100" / config
    run_dir = bench.root / rel_dir
    run_dir.mkdir(parents=True)

    # Power: per GPU, a batch-dependent level, a seed offset, a GPU offset and a slow wave.
    duration = 30.0 + 0.5 * seed
    n_steady = int(round(duration / SAMPLE_S))
    ks = np.arange(-PAD, n_steady + PAD + 1)
    rel = ks * SAMPLE_S
    ss_start, ss_end = start + 100.0, start + 100.0 + duration
    per_gpu = {
        gpu: per_gpu_base_w(batch) + 5.0 * seed + 3.0 * gpu + 20.0 * np.sin(2 * np.pi * rel / 3.7 + seed)
        for gpu in range(plan.gpus)
    }
    instant = {str(g): [[ss_start + r, float(w)] for r, w in zip(rel, per_gpu[g])] for g in per_gpu}
    average = {str(g): [[ss_start + r, float(w) - 1.0] for r, w in zip(rel, per_gpu[g])] for g in per_gpu}
    temperature = {str(g): [[ss_start + r, 60.0] for r in rel] for g in per_gpu}
    steady = (ks >= 0) & (ks <= n_steady)
    total = sum(per_gpu.values())
    avg_power = float(np.mean(total[steady]))

    # ITL: lognormal around the batch's mean; one failed request the library must skip.
    rng = np.random.default_rng(1000 * batch + seed)
    sigma = 0.3
    requests = []
    itl_all: list[float] = []
    for _ in range(REQUESTS):
        itl = (itl_mean_s(batch) * rng.lognormal(-0.5 * sigma**2, sigma, size=TOKENS)).tolist()
        itl_all.extend(itl)
        requests.append({"success": True, "output_len": TOKENS + 1, "itl": itl})
    requests.append({"success": False, "output_len": 0, "itl": [5.0] * 10})
    itl_arr = np.asarray(itl_all)

    tps = throughput_tps(batch, seed)
    energy = avg_power * duration
    results = {
        "steady_state_duration": duration,
        "steady_state_energy": energy,
        "steady_state_energy_per_token": avg_power / tps,
        "completed": REQUESTS,
        "total_output_tokens": REQUESTS * (TOKENS + 1),
        "results": requests,
        "timeline": {
            "steady_state_start_time": ss_start,
            "steady_state_end_time": ss_end,
            "power": {"device_instant": instant, "device_average": average},
            "temperature": temperature,
        },
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    avg_batch = 0.95 * batch if stable else 0.5 * batch
    (run_dir / "prometheus.json").write_text(
        json.dumps({"steady_state_stats": {"vllm:num_requests_running": avg_batch}})
    )

    if stable:
        key = (plan.model_id, batch)
        bench.timelines.setdefault(key, []).append((rel[steady], total[steady]))
        bench.itl.setdefault(key, []).extend(itl_all)
        bench.avg_power.setdefault(key, []).append(avg_power)
    avg_len = float(TOKENS + 1)
    return {
        "domain": "llm",
        "task": plan.task,
        "model_id": plan.model_id,
        "nickname": model.title(),
        "architecture": "Dense",
        "total_params_billions": 8.0,
        "activated_params_billions": 8.0,
        "weight_precision": "bfloat16",
        "gpu_model": "H100",
        "num_gpus": plan.gpus,
        "max_num_seqs": batch,
        "seed": seed,
        "num_request_repeats": 1,
        "tensor_parallel": plan.gpus,
        "expert_parallel": 1,
        "data_parallel": 1,
        "steady_state_energy_joules": energy,
        "steady_state_duration_seconds": duration,
        "energy_per_token_joules": avg_power / tps,
        "energy_per_request_joules": avg_power / tps * avg_len,
        "output_throughput_tokens_per_sec": tps,
        "request_throughput_req_per_sec": tps / avg_len,
        "avg_power_watts": avg_power,
        "total_output_tokens": float(REQUESTS * (TOKENS + 1)),
        "completed_requests": float(REQUESTS),
        "avg_output_len": avg_len,
        "mean_itl_ms": float(itl_arr.mean() * 1000),
        "median_itl_ms": float(np.percentile(itl_arr, 50) * 1000),
        "p50_itl_ms": float(np.percentile(itl_arr, 50) * 1000),
        "p90_itl_ms": float(np.percentile(itl_arr, 90) * 1000),
        "p95_itl_ms": float(np.percentile(itl_arr, 95) * 1000),
        "p99_itl_ms": float(np.percentile(itl_arr, 99) * 1000),
        "avg_batch_size": avg_batch,
        "is_stable": stable,
        "unstable_reason": "" if stable else "low_batch_utilization:0.500000",
        "results_path": (rel_dir / "results.json").as_posix(),
        "prometheus_path": (rel_dir / "prometheus.json").as_posix(),
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Bench:
    bench = Bench(root=tmp_path_factory.mktemp("mlenergy"))
    rows = []
    start = T0
    for plan in PLANS:
        for batch in (*plan.batches, *plan.unstable_batches):
            for seed in plan.seeds:
                rows.append(_write_run(bench, plan, batch, seed, start, stable=batch not in plan.unstable_batches))
                start += 1000.0
    (bench.root / "runs").mkdir()
    pd.DataFrame(rows).to_parquet(bench.root / "runs" / "llm.parquet", index=False)
    return bench


@pytest.fixture(scope="module")
def source(bench: Bench) -> MLEnergySource:
    """One source for the module: it only reads, and its caches keep the tests fast."""
    return MLEnergySource(bench.root)


SPEC_A = ModelSpec(
    model_label="Model-A",
    model_id="org/model-a",
    task="lm-arena-chat",
    gpus_per_replica=1,
    batch_sizes=(8, 16, 32, 64, 128),
)
SPEC_B = ModelSpec(
    model_label="Model-B", model_id="org/model-b", task="gpqa", gpus_per_replica=2, batch_sizes=(8, 16, 32)
)


# -- the generated layout is what mlenergy-data 0.4.0 reads --------------------------------------
def test_generated_folder_loads_with_every_llmrun_field(bench: Bench) -> None:
    frame = pd.read_parquet(bench.root / "runs" / "llm.parquet")
    wanted = {f.name.lstrip("_") for f in fields(LLMRun)}
    assert wanted <= set(frame.columns)
    runs = LLMRuns.from_directory(bench.root)
    assert len(runs) == 3 * 4 + 2 * 3  # the three unstable runs are dropped
    assert len(LLMRuns.from_directory(bench.root, stable_only=False)) == len(runs) + 3


# -- selection ----------------------------------------------------------------------------------
def test_batch_sizes_are_the_stable_measured_ones(source: MLEnergySource) -> None:
    assert source.batch_sizes(SPEC_A) == (8, 16, 32, 64)  # 128 is only unstable
    assert source.batch_sizes(SPEC_B) == (8, 16, 32)
    narrow = SPEC_A.model_copy(update={"batch_sizes": (16, 64), "feasible_batch_sizes": (16, 64)})
    assert source.batch_sizes(narrow) == (16, 64)
    assert source.key(SPEC_A) == SPEC_A.cache_hash()
    assert source.description == f"ML.ENERGY benchmark runs in {source.root}"
    assert not source.is_synthetic


def test_unknown_model_names_the_label_and_the_filters(source: MLEnergySource) -> None:
    spec = ModelSpec(model_label="Mystery-7B", model_id="org/unknown", batch_sizes=(8, 16))
    with pytest.raises(MissingDataError) as info:
        source.trace(spec, 8)
    message = str(info.value)
    assert "Mystery-7B" in message and "org/unknown" in message and "model_id" in message
    assert "org/model-a" in message  # lists what the data do hold


def test_wrong_gpu_count_or_precision_finds_nothing(source: MLEnergySource) -> None:
    wrong_gpus = SPEC_B.model_copy(update={"gpus_per_replica": 1, "tensor_parallel": 1})
    with pytest.raises(MissingDataError, match="num_gpus=2"):  # the hint shows what exists
        source.batch_sizes(wrong_gpus)
    fp8 = SPEC_A.model_copy(update={"precision": "fp8"})
    with pytest.raises(MissingDataError, match="precision='fp8'"):
        source.logistic_fits(fp8)


def test_unmeasured_batch_is_missing(source: MLEnergySource) -> None:
    with pytest.raises(MissingDataError, match="batch 128"):
        source.trace(SPEC_A, 128)
    assert source.itl_fit(SPEC_A, 128) is None


def test_precision_spellings_are_normalised_leniently() -> None:
    assert normalise_precision("BF16") == normalise_precision("bfloat16") == "bfloat16"
    assert normalise_precision("fp8_e4m3") == normalise_precision("FP8") == normalise_precision("float8") == "fp8"
    assert normalise_precision("float16") is None and normalise_precision(None) is None


# -- power --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "batch", "n_points"), [(SPEC_A, 8, 306), (SPEC_A, 64, 306), (SPEC_B, 16, 303)], ids=["A-8", "A-64", "B-16"]
)
def test_trace_is_the_median_of_runs_on_the_tenth_second_grid(
    source: MLEnergySource, bench: Bench, spec: ModelSpec, batch: int, n_points: int
) -> None:
    runs = bench.timelines[(spec.model_id, batch)]
    # Median run end: A 30.5 s (runs of 30, 30.5, 31 s); B 30.25 s (30, 30.5 s), last point 30.2 s.
    grid = np.arange(n_points) / 10
    expected = np.median([np.interp(grid, t, p) for t, p in runs], axis=0)
    trace = source.trace(spec, batch)
    assert trace.measured_gpus == spec.gpus_per_replica
    np.testing.assert_allclose(trace.t_s, grid, atol=1e-12)
    np.testing.assert_allclose(trace.power_w, expected, rtol=1e-12)


def test_trace_points_by_hand(source: MLEnergySource, bench: Bench) -> None:
    runs = bench.timelines[("org/model-a", 32)]  # three runs sampled every 0.25 s from t = 0
    trace = source.trace(SPEC_A, 32)
    # t = 0.1 s lies 40 % of the way from the first to the second sample of every run.
    at_01 = sorted(p[0] + 0.4 * (p[1] - p[0]) for _, p in runs)[1]
    assert trace.power_w[1] == pytest.approx(at_01, rel=1e-12)
    # t = 30.5 s (the median end): the 30 s run is held at its last sample.
    t_end = [p[-1] if t[-1] <= 30.5 else p[np.searchsorted(t, 30.5)] for t, p in runs]
    assert trace.t_s[-1] == pytest.approx(30.5)
    assert trace.power_w[-1] == pytest.approx(sorted(t_end)[1], rel=1e-12)


def test_power_rises_with_batch(source: MLEnergySource) -> None:
    means = [source.trace(SPEC_A, b).power_w.mean() for b in source.batch_sizes(SPEC_A)]
    assert means == sorted(means) and means[-1] > means[0] + 100


def test_per_gpu_template_length_and_scale(source: MLEnergySource) -> None:
    trace = source.trace(SPEC_B, 16)
    template = source.power_template(SPEC_B, 16, Fraction(1, 10), 30)
    assert len(template) == 301 and template.dt == Fraction(1, 10)
    np.testing.assert_allclose(template.power_w, trace.power_w[:301] / 2, rtol=1e-12)
    # Two GPUs at the batch's level, seed offsets 0 and 5 W, GPU offsets 0 and 3 W.
    assert template.power_w.mean() == pytest.approx(per_gpu_base_w(16) + 2.5 + 1.5, abs=3.0)


# -- latency and fits ---------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "batch"), [(SPEC_A, 8), (SPEC_A, 64), (SPEC_B, 32)], ids=["A-8", "A-64", "B-32"])
def test_itl_fit_mean_matches_the_generated_samples(
    source: MLEnergySource, bench: Bench, spec: ModelSpec, batch: int
) -> None:
    fit = source.itl_fit(spec, batch)
    assert fit is not None
    generated = float(np.mean(bench.itl[(spec.model_id, batch)]))  # the failed request excluded
    assert fit.mean_var()[0] == pytest.approx(generated, rel=0.03)
    assert fit.mean_var()[0] == pytest.approx(itl_mean_s(batch), rel=0.05)


def test_logistic_fits_follow_the_per_batch_medians(source: MLEnergySource, bench: Bench) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)  # four logistic-shaped points fit cleanly
        fits = source.logistic_fits(SPEC_A)
    batches = source.batch_sizes(SPEC_A)
    power = [fits.power.eval(b) for b in batches]
    assert all(a < b for a, b in itertools.pairwise(power))
    for b, p in zip(batches, power):
        assert p == pytest.approx(float(np.median(bench.avg_power[("org/model-a", b)])), rel=0.03)
    latency = [fits.latency.eval(b) for b in batches]
    assert all(a < b for a, b in itertools.pairwise(latency))
    assert latency[0] == pytest.approx(itl_mean_s(8), rel=0.1)
    assert fits.throughput.eval(64) > fits.throughput.eval(8)


def test_excluded_batches_change_the_fit(source: MLEnergySource) -> None:
    excluding = SPEC_A.model_copy(update={"fit_exclude_batch_sizes": (64,)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # three points leave the steepness loose
        assert source.logistic_fits(excluding).to_dict() != source.logistic_fits(SPEC_A).to_dict()


# -- opening and caching ------------------------------------------------------------------------
def test_open_data_source_recognises_the_folder(bench: Bench) -> None:
    opened = open_data_source(bench.root)
    assert isinstance(opened, MLEnergySource)
    assert opened.batch_sizes(SPEC_B) == (8, 16, 32)


def test_round_trip_through_a_v02_cache(source: MLEnergySource, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # model B has three batches: loose steepness
        written = write_v02_cache(source, [SPEC_A, SPEC_B], tmp_path / "cache")
    cache = open_data_source(written)
    assert isinstance(cache, V02CacheSource)
    for spec in (SPEC_A, SPEC_B):
        assert cache.batch_sizes(spec) == source.batch_sizes(spec)
        for batch in source.batch_sizes(spec):
            np.testing.assert_allclose(cache.trace(spec, batch).t_s, source.trace(spec, batch).t_s, rtol=1e-12)
            np.testing.assert_allclose(cache.trace(spec, batch).power_w, source.trace(spec, batch).power_w, rtol=1e-12)
            assert cache.itl_fit(spec, batch).to_dict() == pytest.approx(source.itl_fit(spec, batch).to_dict())
        assert cache.logistic_fits(spec).to_dict()["power"] == pytest.approx(
            source.logistic_fits(spec).to_dict()["power"]
        )
    manifest = json.loads((written / SPEC_A.cache_hash() / "_manifest.json").read_text())
    assert manifest["source"] == source.description and manifest["synthetic"] is False


def test_from_hf_wraps_the_library_loader(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_from_hf(cls, repo_id, *, revision=None, stable_only=True):
        calls.append((repo_id, revision, stable_only))
        return cls.from_directory(bench.root, stable_only=stable_only)

    monkeypatch.setattr(LLMRuns, "from_hf", classmethod(fake_from_hf))
    hf = MLEnergySource.from_hf("ml-energy/benchmark-v3")
    assert calls == [("ml-energy/benchmark-v3", None, True)]
    assert hf.description == "ML.ENERGY benchmark runs in hf://datasets/ml-energy/benchmark-v3"
    assert hf.batch_sizes(SPEC_A) == (8, 16, 32, 64)


def test_missing_parquet_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="llm.parquet"):
        MLEnergySource(tmp_path)
