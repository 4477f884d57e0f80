"""The data layer: model specs and their hash, traces and templates, the bundled synthetic
dataset, OpenG2G caches (the real v0.1 reference cache, v0.2 round trips), training traces."""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from g2gsim.data import MissingDataError, open_data_source
from g2gsim.data.bundled import CURVES, BundledSyntheticSource
from g2gsim.data.caches import V01CacheSource, V02CacheSource, write_v02_cache
from g2gsim.data.spec import PAPER_MODELS, ModelSpec
from g2gsim.data.traces import PowerTrace, build_template
from g2gsim.data.training import (
    TrainingTraceParams,
    load_training_trace,
    save_training_trace,
    synthetic_training_trace,
)

EIGHT_B = PAPER_MODELS["Llama-3.1-8B"]


# -- model specs --------------------------------------------------------------------------------
def test_cache_hash_is_sha256_of_the_canonical_identity() -> None:
    identity = {
        "model_id": EIGHT_B.model_id,
        "gpu_model": "H100",
        "task": "lm-arena-chat",
        "precision": "bfloat16",
        "gpus_per_replica": 1,
        "tensor_parallel": 1,
        "expert_parallel": 1,
        "batch_sizes": [8, 16, 32, 64, 128, 256, 512],
        "fit_exclude_batch_sizes": [],
    }
    expected = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    assert EIGHT_B.cache_hash() == expected


def test_cache_hash_ignores_simulation_knobs_but_not_measurements() -> None:
    same = EIGHT_B.model_copy(update={"model_label": "other", "itl_deadline_s": 0.5})
    assert same.cache_hash() == EIGHT_B.cache_hash()
    reordered = ModelSpec(**{**EIGHT_B.model_dump(), "batch_sizes": (512, 8, 16, 32, 64, 128, 256)})
    assert reordered.cache_hash() == EIGHT_B.cache_hash()
    other = ModelSpec(**{**EIGHT_B.model_dump(), "task": "gpqa"})
    assert other.cache_hash() != EIGHT_B.cache_hash()


@pytest.mark.parametrize(
    ("update", "needle"),
    [
        ({"gpus_per_replica": 0}, "gpus_per_replica"),
        ({"itl_deadline_s": 0.0}, "itl_deadline_s"),
        ({"feasible_batch_sizes": (8, 1000)}, "[1000]"),
        ({"batch_sizes": ()}, "batch_sizes"),
        ({"batch_sizes": (8, 8)}, "duplicates"),
        ({"precision": "int3"}, "precision"),
    ],
)
def test_spec_validation_names_the_field(update: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=None) as info:
        ModelSpec(**{**EIGHT_B.model_dump(), **update})
    assert needle in str(info.value)


def test_feasible_defaults_to_all_measured_sizes() -> None:
    spec = ModelSpec(model_label="m", batch_sizes=(32, 8))
    assert spec.batch_sizes == (8, 32) and spec.feasible_batch_sizes == (8, 32)
    assert spec.tensor_parallel == 1


def test_paper_models_match_the_spec() -> None:
    gpus = {k: v.gpus_per_replica for k, v in PAPER_MODELS.items()}
    assert gpus == {
        "Llama-3.1-8B": 1,
        "Llama-3.1-70B": 4,
        "Llama-3.1-405B": 8,
        "Qwen3-30B-A3B": 2,
        "Qwen3-235B-A22B": 8,
    }
    assert PAPER_MODELS["Llama-3.1-405B"].precision == "fp8"
    assert PAPER_MODELS["Qwen3-30B-A3B"].task == "gpqa"


# -- traces and templates -------------------------------------------------------------------------
def _trace(n: int = 11, gpus: int = 2) -> PowerTrace:
    t = np.arange(n, dtype=float)
    return PowerTrace(t, 100.0 * gpus * (1 + t), measured_gpus=gpus)


def test_template_is_per_gpu_periodic_on_the_step_grid() -> None:
    template = build_template(_trace(), Fraction(1, 2), 25)
    assert len(template) == math.ceil(Fraction(25) / Fraction(1, 2)) + 1
    assert template.power_w[0] == 100.0
    assert template.power_w[1] == pytest.approx(150.0)
    # the trace spans 10 s: t = 10 wraps back to the start
    assert template.power_w[20] == pytest.approx(100.0)
    assert template.power_w[21] == pytest.approx(150.0)


def test_template_skips_warm_up_only_when_enough_samples_remain() -> None:
    assert build_template(_trace(), 1, 3, steady_skip_s=2.0).power_w[0] == pytest.approx(300.0)
    assert build_template(_trace(), 1, 3, steady_skip_s=8.0).power_w[0] == pytest.approx(100.0)


def test_template_refuses_another_step() -> None:
    template = build_template(_trace(), 0.1, 1)
    template.check_dt(Fraction(1, 10))
    with pytest.raises(ValueError, match="dt = 1/10 s cannot be replayed at dt = 1/2 s"):
        template.check_dt(0.5)


def test_trace_validation() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        PowerTrace(np.arange(3.0), np.ones(3))
    with pytest.raises(ValueError, match="strictly increasing"):
        PowerTrace(np.array([0, 1, 1, 2, 3.0]), np.ones(5))
    with pytest.raises(ValueError, match="measured_gpus"):
        PowerTrace(np.arange(5.0), np.ones(5), measured_gpus=0)


@given(
    dt=st.fractions(min_value=Fraction(1, 100), max_value=Fraction(5)),
    horizon=st.integers(min_value=1, max_value=300),
)
def test_template_length_and_bounds(dt: Fraction, horizon: int) -> None:
    trace = PowerTrace(np.linspace(0, 7.3, 40), 400 + 50 * np.sin(np.arange(40.0)), measured_gpus=4)
    template = build_template(trace, dt, horizon)
    assert len(template) == math.ceil(Fraction(horizon) / dt) + 1
    per_gpu = trace.per_gpu_w
    assert per_gpu.min() - 1e-9 <= template.power_w.min() and template.power_w.max() <= per_gpu.max() + 1e-9


# -- bundled synthetic dataset -----------------------------------------------------------------------
@pytest.mark.parametrize("label", sorted(CURVES))
def test_bundled_traces_match_the_published_figures(label: str) -> None:
    source = BundledSyntheticSource()
    spec = PAPER_MODELS[label]
    assert source.is_synthetic and "synthetic" in source.description
    for point in CURVES[label]:
        if point.batch not in spec.batch_sizes:
            continue
        template = source.power_template(spec, point.batch, Fraction(1, 10), 60)
        assert template.power_w.mean() == pytest.approx(point.power_w, rel=0.01)
        p5, p95 = np.percentile(template.power_w, [5, 95])
        assert (p95 - p5) == pytest.approx(point.p95_w - point.p5_w, rel=0.3)
        mean_itl, _ = source.itl_fit(spec, point.batch).mean_var()
        assert mean_itl == pytest.approx(point.itl_ms / 1000, rel=1e-9)


def test_bundled_warm_up_is_in_the_trace_but_not_the_template() -> None:
    source = BundledSyntheticSource()
    trace = source.trace(EIGHT_B, 128)
    assert trace.per_gpu_w[0] < 0.6 * 667
    assert source.power_template(EIGHT_B, 128, 0.1, 10).power_w.min() > 0.8 * 667


def test_bundled_logistic_fits_follow_the_published_curves() -> None:
    source = BundledSyntheticSource()
    for label, points in CURVES.items():
        spec = PAPER_MODELS[label]
        fits = source.logistic_fits(spec)
        for p in points:
            assert fits.power.eval(p.batch) == pytest.approx(p.power_fit_w * spec.gpus_per_replica, rel=0.03)
            assert fits.throughput.eval(p.batch) == pytest.approx(p.throughput_tps, rel=0.05, abs=40)


def test_bundled_is_deterministic_and_labelled() -> None:
    a = BundledSyntheticSource().power_template(EIGHT_B, 64, 0.1, 30).power_w
    b = BundledSyntheticSource().power_template(EIGHT_B, 64, 0.1, 30).power_w
    assert np.array_equal(a, b)


def test_bundled_unknown_model_names_what_it_covers() -> None:
    with pytest.raises(MissingDataError, match="no bundled data .* for model 'Mistral'"):
        BundledSyntheticSource().trace(ModelSpec(model_label="Mistral"), 8)
    with pytest.raises(
        MissingDataError, match=r"batch 3 ; batch sizes with data|at batch 3; batch sizes with data: \[8"
    ):
        BundledSyntheticSource().trace(EIGHT_B, 3)


# -- caches ----------------------------------------------------------------------------------
def test_v02_round_trip_keeps_traces_and_fits(tmp_path) -> None:
    bundled = BundledSyntheticSource()
    specs = [PAPER_MODELS["Llama-3.1-8B"], PAPER_MODELS["Qwen3-30B-A3B"]]
    folder = write_v02_cache(bundled, specs, tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == sorted(s.cache_hash() for s in specs)
    manifest = json.loads((folder / specs[0].cache_hash() / "_manifest.json").read_text())
    assert manifest["spec_hash"] == specs[0].cache_hash() and manifest["synthetic"] is True
    cache = open_data_source(folder)
    assert isinstance(cache, V02CacheSource)
    for spec in specs:
        assert cache.batch_sizes(spec) == bundled.batch_sizes(spec)
        for batch in (8, 128):
            assert np.allclose(cache.trace(spec, batch).power_w, bundled.trace(spec, batch).power_w, rtol=1e-12)
            assert cache.itl_fit(spec, batch).to_dict() == pytest.approx(bundled.itl_fit(spec, batch).to_dict())
        assert cache.logistic_fits(spec).to_dict() == bundled.logistic_fits(spec).to_dict()
    # a specs/ parent folder is accepted too (OpenG2G writes data/specs/<hash>)
    (tmp_path / "root").mkdir()
    (folder).rename(tmp_path / "root" / "specs")
    assert isinstance(open_data_source(tmp_path / "root"), V02CacheSource)


def test_v02_missing_spec_names_the_folder(tmp_path) -> None:
    folder = write_v02_cache(BundledSyntheticSource(), [EIGHT_B], tmp_path)
    other = PAPER_MODELS["Llama-3.1-70B"]
    with pytest.raises(MissingDataError, match=other.cache_hash()):
        V02CacheSource(folder).trace(other, 8)


def test_open_data_source_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        open_data_source(tmp_path / "absent")
    with pytest.raises(ValueError, match="no recognised layout"):
        open_data_source(tmp_path)
    assert isinstance(open_data_source(None), BundledSyntheticSource)


def test_v01_missing_column_is_named(tmp_path) -> None:
    pd.DataFrame({"model_label": ["m"], "num_gpus": [1]}).to_csv(tmp_path / "traces_summary.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['max_num_seqs', 'trace_file'\]"):
        open_data_source(tmp_path)


def test_reference_v01_cache_reads_as_is(reference_dir) -> None:
    folder = reference_dir / "mlenergy-derived"
    source = open_data_source(folder)
    assert isinstance(source, V01CacheSource) and not source.is_synthetic
    summary = pd.read_csv(folder / "traces_summary.csv")
    for label, spec in PAPER_MODELS.items():
        rows = summary[summary.model_label == label]
        assert source.batch_sizes(spec) == tuple(sorted(rows.max_num_seqs))
        row = rows[rows.max_num_seqs == 128].iloc[0]
        raw = pd.read_csv(folder / row.trace_file)
        template = source.power_template(spec, 128, Fraction(1, 10), 5)
        expected = np.clip(raw.power_total_W.to_numpy() / row.num_gpus, 0, None)[:51]
        assert np.allclose(template.power_w, expected)
        fits = pd.read_csv(folder / "latency_fits.csv")
        fit_row = fits[(fits.model_label == label) & (fits.max_num_seqs == 128)].iloc[0]
        assert source.itl_fit(spec, 128).loc == fit_row.itl_mix_loc
        power = pd.read_csv(folder / "logistic_fits.csv").query("model_label == @label and metric == 'power'").iloc[0]
        assert source.logistic_fits(spec).power.L == power.L


def test_reference_v01_cache_agrees_with_the_bundled_figures(reference_dir) -> None:
    """The bundled data were built from the figures of this cache: the two agree in level."""
    cache = open_data_source(reference_dir / "mlenergy-derived")
    bundled = BundledSyntheticSource()
    for label, spec in PAPER_MODELS.items():
        for batch in (8, 128, 512):
            real = cache.trace(spec, batch).per_gpu_w.mean()  # over the whole measured trace
            synthetic = bundled.power_template(spec, batch, 0.1, 60).power_w.mean()
            assert synthetic == pytest.approx(real, rel=0.01), (label, batch)


# -- training traces -----------------------------------------------------------------------------
def test_training_trace_shape_and_levels() -> None:
    trace = synthetic_training_trace()
    assert trace.t_s.size == 10_000 and trace.t_s[1] == pytest.approx(0.1)
    assert trace.power_w[0] == pytest.approx(50.0, abs=1e-9) or trace.power_w[0] < 50.0
    steady = trace.power_w[200:]
    assert np.median(steady[steady > 200]) == pytest.approx(225, abs=15)
    assert np.median(steady[steady < 200]) == pytest.approx(175, abs=25)
    ramp = np.linspace(50, 225, 180)
    assert np.all(trace.power_w[:180] <= ramp + 1e-9)
    assert trace.power_w.min() >= 0


def test_training_trace_seeded() -> None:
    assert np.array_equal(synthetic_training_trace(seed=5).power_w, synthetic_training_trace(seed=5).power_w)
    assert not np.array_equal(synthetic_training_trace(seed=5).power_w, synthetic_training_trace(seed=6).power_w)


def test_training_params_validation() -> None:
    with pytest.raises(ValidationError, match="high_w"):
        TrainingTraceParams(high_w=100, low_w=150)
    with pytest.raises(ValidationError, match="dip_depth_w"):
        TrainingTraceParams(dip_depth_w=(5.0, 1.0))


def test_training_csv_round_trip(tmp_path) -> None:
    trace = synthetic_training_trace(params=TrainingTraceParams(duration_s=20))
    path = save_training_trace(trace, tmp_path / "t.csv")
    back = load_training_trace(path)
    assert np.allclose(back.t_s, trace.t_s) and np.allclose(back.power_w, trace.power_w)
    pd.DataFrame({"time": [0, 1], "power_W": [1, 2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="missing column"):
        load_training_trace(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        load_training_trace(tmp_path / "none.csv")


def test_logistic_fits_save_and_load_per_spec(tmp_path) -> None:
    from g2gsim.data.caches import load_logistic_fits, save_logistic_fits

    fits = BundledSyntheticSource().logistic_fits(EIGHT_B)
    path = save_logistic_fits(fits, EIGHT_B, tmp_path)
    assert path.parent.name == EIGHT_B.cache_hash()
    assert json.loads(path.read_text())["schema"] == "logistic_v1"
    assert load_logistic_fits(EIGHT_B, tmp_path) == fits
    with pytest.raises(FileNotFoundError, match="Llama-3.1-70B"):
        load_logistic_fits(PAPER_MODELS["Llama-3.1-70B"], tmp_path)


def test_suspicious_fits_warn() -> None:
    from g2gsim.data.fits import FitWarning, fit_logistic

    with pytest.warns(FitWarning, match="not monotone"):
        fit_logistic([8, 16, 32, 64, 128], [100, 300, 150, 400, 200], what="zigzag")


def test_stored_bundled_fits_are_the_fits_of_the_shipped_curves() -> None:
    """The package ships precomputed fits; they must equal a fresh fit of the same figures.

    Equal to 1e-9 relative, not bit for bit: the optimiser's last digits vary with the
    numpy/scipy/BLAS build, while a stale or wrong fit differs in the leading digits.
    """
    from g2gsim.data.bundled import _stored_fits, fit_bundled_logistic

    stored = _stored_fits()
    assert sorted(stored) == sorted(CURVES)  # present and not stale
    for label, entry in stored.items():
        fresh = fit_bundled_logistic(label, entry["gpus_per_replica"], tuple(entry["exclude"])).to_dict()
        shipped = BundledSyntheticSource().logistic_fits(PAPER_MODELS[label]).to_dict()
        for kind, params in fresh.items():
            assert sorted(entry["fits"][kind]) == sorted(params) == sorted(shipped[kind])
            for name, value in params.items():
                assert entry["fits"][kind][name] == pytest.approx(value, rel=1e-9), (label, kind, name)
                assert shipped[kind][name] == pytest.approx(value, rel=1e-9), (label, kind, name)
