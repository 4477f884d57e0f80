"""SLO planning: the memory arithmetic by hand, the TTFT model, the search under every bound, the
figures and their sources, and ``g2gsim plan-batch``."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from g2gsim.data import open_data_source
from g2gsim.data.mlenergy import MLEnergySource
from g2gsim.data.spec import PAPER_MODELS, ModelSpec
from g2gsim.planning import (
    ARCHITECTURES,
    GPUS,
    Bound,
    MemoryModel,
    MissingFigureError,
    ModelBounds,
    SloTargets,
    TtftModel,
    TtftSample,
    architecture_of,
    calibrate,
    gpu_of,
    kv_bytes_per_token,
    largest_batch_meeting,
    limit_spec,
    logistic_batch_limit,
    plan_batches,
    plan_model,
    weight_bytes,
)

DATA = open_data_source(None)
FITS = {label: DATA.logistic_fits(spec) for label, spec in PAPER_MODELS.items()}
H100 = GPUS["H100"]


# -- memory, by hand ------------------------------------------------------------------------------
def test_llama_8b_memory_by_hand() -> None:
    spec = PAPER_MODELS["Llama-3.1-8B"]
    arch = architecture_of(spec)
    assert weight_bytes(arch, "bfloat16") == pytest.approx(8.03e9 * 2)
    assert kv_bytes_per_token(arch, 1) == 32 * 8 * 128 * 2 * 2 == 131_072
    memory = MemoryModel.of(spec, arch, H100)
    assert memory.usable_bytes == pytest.approx((80 * 0.9 - 1.0) * 1e9)  # one GPU, 90 %, 1 GB activations
    # (71e9 - 16.06e9) / (2048 tokens x 131072 B) = 204.66
    assert memory.max_batch(1024, 1024) == 204
    assert memory.tokens_per_sequence(1000, 1000) == 2000 and memory.tokens_per_sequence(1001, 1000) == 2016


def test_qwen_235b_replicates_kv_heads_over_tensor_parallel_gpus() -> None:
    spec = PAPER_MODELS["Qwen3-235B-A22B"]  # 4 KV heads on 8 GPUs (TP 8): 8 heads' worth
    arch = architecture_of(spec)
    assert kv_bytes_per_token(arch, 8) == 94 * 8 * 128 * 2 * 2 == 385_024
    assert kv_bytes_per_token(arch, 4) == 94 * 4 * 128 * 2 * 2
    memory = MemoryModel.of(spec, arch, H100)
    assert memory.weights_bytes == pytest.approx(470e9)
    assert memory.usable_bytes == pytest.approx(8 * 71e9)
    # (568e9 - 470e9) / (2048 x 385024) = 124.28
    assert memory.max_batch(1024, 1024) == 124


def test_fp8_weights_take_one_byte_and_kv_stays_bfloat16() -> None:
    spec = PAPER_MODELS["Llama-3.1-405B"]
    memory = MemoryModel.of(spec, architecture_of(spec), H100)
    assert memory.weights_bytes == pytest.approx(405.9e9)
    assert memory.kv_per_token == 126 * 8 * 128 * 2 * 2
    assert memory.max_batch(1024, 1024) == math.floor((568e9 - 405.9e9) / (2048 * 516_096)) == 153


def test_weights_that_do_not_fit_leave_no_batch() -> None:
    spec = PAPER_MODELS["Llama-3.1-70B"].model_copy(update={"gpus_per_replica": 1, "tensor_parallel": 1})
    memory = MemoryModel.of(spec, architecture_of(spec), H100)
    assert memory.kv_capacity_bytes < 0 and memory.max_batch(128, 128) == 0
    bounds = ModelBounds.of(spec, SloTargets(input_tokens=128, output_tokens=128))
    plan = plan_model(spec, FITS["Llama-3.1-70B"], bounds)
    assert plan.max_batch is None and plan.binding == "memory" and plan.limits["memory"] is None


@given(
    st.sampled_from(sorted(PAPER_MODELS)),
    st.integers(1, 16_384),
    st.integers(1, 16_384),
    st.floats(0.5, 1.0),
)
def test_closed_form_memory_limit_is_the_bound_exactly(label: str, tokens_in: int, tokens_out: int, util) -> None:
    spec = PAPER_MODELS[label]
    memory = MemoryModel.of(spec, architecture_of(spec), H100, gpu_memory_utilization=util)
    batch = memory.max_batch(tokens_in, tokens_out)
    bound = memory.bound(tokens_in, tokens_out)
    assert batch == 0 or bound.meets(batch)
    assert not bound.meets(batch + 1)


# -- TTFT ------------------------------------------------------------------------------------------
def test_prefill_roofline_by_hand() -> None:
    spec = PAPER_MODELS["Llama-3.1-8B"]
    model = TtftModel.of(spec, architecture_of(spec), H100)
    flops = 2 * 8.03e9 * 1024 + 2 * 32 * 1024**2 * 32 * 128
    assert model.prefill_flops(1024) == pytest.approx(flops)
    compute = flops / (989.4e12 * 0.5)
    memory = (16.06e9 + 1024 * 131_072) / (3.35e12 * 0.8)
    assert compute > memory  # a 1024-token prefill of the 8B model is compute-bound
    assert model.prefill_s(1024) == pytest.approx(compute)
    # a short prompt is memory-bound: every weight is read once
    assert model.prefill_s(16) == pytest.approx((16.06e9 + 16 * 131_072) / (3.35e12 * 0.8))
    # TTFT: half a decode step, the queued prefills (r s / 2) and its own prefill
    s, itl = model.prefill_s(1024), 0.02
    r = 64 * s / (512 * itl)
    assert model.ttft_s(64, itl, 1024, 512) == pytest.approx(itl / 2 + s * (1 + r / 2))


def test_fp8_prefill_uses_the_fp8_peak_and_moe_computes_only_active_parameters() -> None:
    fp8 = TtftModel.of(PAPER_MODELS["Llama-3.1-405B"], architecture_of(PAPER_MODELS["Llama-3.1-405B"]), H100)
    assert fp8.peak_flops == pytest.approx(1978.9e12)
    moe_spec = PAPER_MODELS["Qwen3-30B-A3B"]
    moe = TtftModel.of(moe_spec, architecture_of(moe_spec), H100)
    assert moe.active_params == pytest.approx(3.3e9) and moe.weights_bytes == pytest.approx(61e9)
    assert GPUS["A100"].peak_flops("fp8") == GPUS["A100"].peak_flops("bfloat16")  # no FP8 tensor cores


@given(st.sampled_from(sorted(PAPER_MODELS)), st.integers(1, 8192), st.integers(1, 4096))
def test_ttft_grows_with_the_batch(label: str, tokens_in: int, tokens_out: int) -> None:
    spec = PAPER_MODELS[label]
    model = TtftModel.of(spec, architecture_of(spec), H100)
    batches = np.array(spec.feasible, dtype=float)
    itl = np.array([FITS[label].latency.eval(b) for b in spec.feasible])
    ttft = model.ttft_s(batches, itl, tokens_in, tokens_out)
    assert np.all(np.diff(ttft) >= 0) and np.all(ttft >= model.prefill_s(tokens_in))


def test_calibration_recovers_a_scale_and_reports_its_error() -> None:
    spec = PAPER_MODELS["Llama-3.1-70B"]
    model = TtftModel.of(spec, architecture_of(spec), H100)
    rng = np.random.default_rng(0)
    samples = []
    for batch in (8, 32, 128):
        for tokens in (256, 1024, 4096):
            itl = float(FITS["Llama-3.1-70B"].latency.eval(batch))
            truth = 1.7 * model.ttft_s(batch, itl, tokens, 512) * float(np.exp(rng.normal(0, 0.05)))
            samples.append(TtftSample(batch, itl, tokens, 512, truth))
    fit = calibrate(model, samples)
    assert fit.samples == 9 and fit.scale == pytest.approx(1.7, rel=0.05)
    assert fit.rms_error_before == pytest.approx(1 - 1 / 1.7, abs=0.05) and fit.rms_error_after < 0.1
    assert fit.model.scale == fit.scale
    with pytest.raises(ValueError, match="none of 1 sample"):
        calibrate(model, [TtftSample(8, 0.02, 128, 128, math.nan)])


# -- the search -----------------------------------------------------------------------------------
def _step(name: str, threshold: int) -> Bound:
    return Bound(name, lambda b: 1.0 if b > threshold else 0.0, 0.5)


@given(
    st.lists(st.integers(-5, 700), min_size=1, max_size=4),
    st.integers(1, 64),
    st.integers(0, 600),
    st.booleans(),
)
def test_the_search_returns_only_batches_meeting_every_bound(thresholds, lo, width, on_candidates) -> None:
    hi = lo + width
    bounds = [_step(f"b{i}", t) for i, t in enumerate(thresholds)]
    candidates = sorted({lo, *range(lo, hi + 1, 7), hi}) if on_candidates else None
    points = candidates if candidates is not None else list(range(lo, hi + 1))
    got = largest_batch_meeting(bounds, lo, hi, candidates=candidates)
    passing = [b for b in points if all(bound.meets(b) for bound in bounds)]
    want = max(passing) if passing and points[0] in passing else None
    assert got.batch == want
    if got.batch is not None:
        assert all(bound.meets(got.batch) for bound in bounds)
        assert got.values == {bound.name: 0.0 for bound in bounds}
    for bound, threshold in zip(bounds, thresholds, strict=True):
        own = [b for b in points if b <= threshold]
        assert got.limits[bound.name] == (max(own) if own and own[0] == points[0] else None)
    smallest = min((v for v in got.limits.values() if v is not None), default=None)
    if any(v is None for v in got.limits.values()):
        assert set(got.binding.split("+")) == {n for n, v in got.limits.items() if v is None}
    elif smallest is not None and smallest >= points[-1]:
        assert got.binding == "range"
    else:
        assert set(got.binding.split("+")) == {n for n, v in got.limits.items() if v == smallest}


def test_a_bound_that_is_not_monotone_is_caught() -> None:
    zigzag = Bound("zigzag", lambda b: 0.0 if b % 2 else 1.0, 0.5)
    with pytest.raises(ValueError, match="distinct names"):
        largest_batch_meeting([zigzag, zigzag], 1, 9)
    assert largest_batch_meeting([zigzag], 1, 9).batch in (1, 3, 5, 7, 9)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(sorted(PAPER_MODELS)),
    st.integers(64, 8192),
    st.integers(64, 4096),
    st.one_of(st.none(), st.floats(0.05, 10.0)),
)
def test_every_planned_batch_meets_every_bound(label: str, tokens_in: int, tokens_out: int, ttft) -> None:
    spec = PAPER_MODELS[label]
    fits = FITS[label]
    bounds = ModelBounds.of(
        spec, SloTargets(input_tokens=tokens_in, output_tokens=tokens_out, ttft_deadline_s=ttft), source=DATA
    )
    plan = plan_model(spec, fits, bounds)
    checks = bounds.bounds(lambda b: float(fits.latency.eval(b)))
    assert {c.name for c in checks} == {"itl", "memory"} | ({"ttft"} if ttft else set())
    for batch in (plan.limit_batch, plan.max_batch, plan.best_batch):
        assert batch is None or all(c.meets(batch) for c in checks)
    if plan.max_batch is not None:  # the next feasible size fails some bound
        bigger = [b for b in spec.feasible if b > plan.max_batch]
        assert not bigger or not all(c.meets(bigger[0]) for c in checks)
        assert plan.limits["memory"] == min(bounds.memory_batch, plan.top_batch)
    assert plan.limits["itl"] == logistic_batch_limit(fits.latency, spec.itl_deadline_s, 8, 512)


def test_itl_only_plan_is_the_old_plan() -> None:
    for plan in plan_batches(PAPER_MODELS, FITS):
        spec = PAPER_MODELS[plan.model]
        assert plan.limits == {"itl": plan.limit_batch}
        assert plan.limit_batch == logistic_batch_limit(FITS[plan.model].latency, spec.itl_deadline_s, 8, 512)
        assert plan.memory_batch is None and math.isnan(plan.best_ttft_s)


def test_limit_spec_cuts_feasible_sizes_and_refuses_an_empty_set() -> None:
    spec = PAPER_MODELS["Llama-3.1-8B"]
    assert limit_spec(spec, 200).feasible == (8, 16, 32, 64, 128)
    assert limit_spec(spec, 512) is spec
    assert limit_spec(spec, 200).cache_hash() == spec.cache_hash()  # same measurements
    with pytest.raises(ValueError, match="no feasible batch size is at or below the batch limit 4"):
        limit_spec(spec, 4)


# -- figures and their sources ------------------------------------------------------------------------
def test_every_paper_model_has_figures_with_sources() -> None:
    for spec in PAPER_MODELS.values():
        arch = architecture_of(spec)
        assert set(arch.sources) >= {"layers", "kv_heads", "head_dim", "total_params_b", "active_params_b"}
        assert all("huggingface.co" in arch.sources[k] for k in ("layers", "kv_heads", "total_params_b"))
        assert gpu_of(spec).source.startswith("NVIDIA")
    assert ARCHITECTURES["Qwen/Qwen3-30B-A3B-Thinking-2507"].active_params_b == 3.3


def test_a_model_without_figures_is_an_error_naming_them() -> None:
    spec = ModelSpec(model_label="Mystery-7B", model_id="org/mystery-7b")
    with pytest.raises(MissingFigureError, match=r"Mystery-7B.*'layers', 'attention_heads', 'kv_heads', 'head_dim'"):
        architecture_of(spec)
    with pytest.raises(MissingFigureError, match="no memory, bandwidth and throughput figures for GPU 'MI300X'"):
        gpu_of(spec.model_copy(update={"gpu_model": "MI300X"}))
    with pytest.raises(MissingFigureError, match="Mystery-7B"):
        ModelBounds.of(spec, SloTargets(input_tokens=10, output_tokens=10))
    assert ModelBounds.of(spec).memory is None  # without lengths nothing but the ITL bound is needed


class _Runs(MLEnergySource):
    """An ML.ENERGY source whose runs record the parameters (without reading any files)."""

    def __init__(self, total: float, active: float) -> None:
        self.description_text = "test runs"
        self.run = type("Run", (), {"total_params_billions": total, "activated_params_billions": active})()
        self.run.model_id = "meta-llama/Llama-3.1-8B-Instruct"

    @property
    def description(self) -> str:
        return self.description_text

    def select(self, spec):
        return {128: [self.run]}


def test_parameters_come_from_the_data_source_where_it_has_them() -> None:
    spec = PAPER_MODELS["Llama-3.1-8B"]
    arch = architecture_of(spec, _Runs(8.0, 8.0))
    assert arch.total_params_b == 8.0 and arch.layers == 32
    assert arch.sources["total_params_b"] == "test runs: model_info of meta-llama/Llama-3.1-8B-Instruct"
    assert "config.json" in arch.sources["layers"]
    assert architecture_of(spec, DATA) == ARCHITECTURES[spec.model_id]  # the bundled data has no model info


def test_targets_must_be_complete() -> None:
    spec = PAPER_MODELS["Llama-3.1-8B"]
    with pytest.raises(ValueError, match="input_tokens and output_tokens go together"):
        ModelBounds.of(spec, SloTargets(input_tokens=10))
    with pytest.raises(ValueError, match="ttft_deadline_s needs the lengths"):
        ModelBounds.of(spec, SloTargets(ttft_deadline_s=1.0))
    merged = SloTargets(input_tokens=10, output_tokens=20).merged(SloTargets(output_tokens=30))
    assert (merged.input_tokens, merged.output_tokens) == (10, 30)


# -- the command ------------------------------------------------------------------------------------
def _app() -> typer.Typer:
    from g2gsim.cli.planning import register

    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command keeps plan-batch a named subcommand
        pass

    return app


def test_plan_batch_prints_each_bound_and_the_binding_one() -> None:
    out = CliRunner().invoke(_app(), ["plan-batch"], terminal_width=250)
    assert out.exit_code == 0, out.output
    for heading in ("ITL limit", "TTFT limit", "memory limit", "binding"):
        assert heading in out.output
    row = next(line for line in out.output.splitlines() if "Qwen3-235B-A22B" in line)
    assert "memory" in row and "124" in row
    out = CliRunner().invoke(
        _app(), ["plan-batch", "--json", "--input-tokens", "4096", "--output-tokens", "512", "--ttft-deadline", "0.5"]
    )
    rows = {r["model"]: r for r in __import__("json").loads(out.output)}
    assert rows["Llama-3.1-405B"]["binding"] == "ttft" and rows["Llama-3.1-405B"]["max_batch"] == 8
    assert rows["Qwen3-30B-A3B"]["binding"] == "memory"
    itl_only = CliRunner().invoke(_app(), ["plan-batch", "--json", "--itl-only"])
    assert all(r["memory_limit"] is None for r in __import__("json").loads(itl_only.output))


def test_plan_batch_names_a_bad_length() -> None:
    out = CliRunner().invoke(_app(), ["plan-batch", "--output-tokens", "0"])
    assert out.exit_code == 2 and "--output-tokens" in out.output


def test_scaled_ttft_model_scales_the_ttft() -> None:
    spec = PAPER_MODELS["Llama-3.1-8B"]
    model = TtftModel.of(spec, architecture_of(spec), H100)
    assert replace(model, scale=2.0).ttft_s(8, 0.01, 512, 512) == pytest.approx(2 * model.ttft_s(8, 0.01, 512, 512))
