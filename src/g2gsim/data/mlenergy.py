"""ML.ENERGY benchmark runs read through ``mlenergy-data`` (SPEC 8.2).

A local copy of the compiled benchmark data (``<root>/runs/llm.parquet`` plus the raw
``results.json`` / ``prometheus.json`` files it points to) is loaded with
:meth:`LLMRuns.from_directory`; only stable runs are kept unless asked otherwise. For a model
spec the runs are filtered on

- ``task == spec.task``, ``model_id == spec.model_id``, ``gpu_model == spec.gpu_model``,
  ``num_gpus == spec.gpus_per_replica`` and ``max_num_seqs in spec.batch_sizes``;
- weight precision, leniently: the library records ``weight_precision`` as a free string
  (``"bfloat16"`` / ``"fp8"`` in practice, taken from ``model_info.json`` or inferred from the
  model id). Spellings are normalised (``bf16`` -> ``bfloat16``, ``fp8*`` / ``float8*`` ->
  ``fp8``, case-insensitive); a run is dropped only when its precision normalises to a value a
  spec can take and differs from ``spec.precision``. Runs with an empty or unrecognised
  precision are kept.

Parallelism (``tensor_parallel`` / ``expert_parallel``) is not filtered on: the benchmark has
one parallel layout per (model, GPU, GPU count), and MoE models are recorded with expert
parallelism that a spec's defaults would not match.

Per (model, batch):

- power trace: each run's ``power.device_instant`` timeline (steady-state window, summed
  over the run's GPUs) is linearly interpolated on the grid 0, 0.1, 0.2, ... s up to the
  median of the runs' end times (a run shorter than that is held at its last value), and
  the median over runs is taken at every grid point;
- ITL: a two-lognormal mixture fitted to all ITL samples of the runs (at most 2048 drawn
  with seed 0); no fit when the runs hold no valid samples.

Per model, logistic fits use per-batch medians over runs of ``avg_power_watts`` (W over the
replica's GPUs), ``mean_itl_ms / 1000`` and ``output_throughput_tokens_per_sec``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mlenergy.data.modeling import ITLMixtureModel
from mlenergy.data.records.runs import LLMRun, LLMRuns

from g2gsim.data.caches import TableSource
from g2gsim.data.fits import LogisticFits, fit_logistic_fits
from g2gsim.data.traces import PowerTrace

if TYPE_CHECKING:
    from g2gsim.data.spec import ModelSpec

__all__ = ["GRID_STEP_S", "ITL_MAX_SAMPLES", "ITL_SEED", "POWER_METRIC", "MLEnergySource", "normalise_precision"]

#: Step of the common time grid the runs of one (model, batch) are resampled on, s.
GRID_STEP_S = 0.1
#: ITL samples used per mixture fit (drawn at random beyond that) and the draw's seed.
ITL_MAX_SAMPLES = 2048
ITL_SEED = 0
#: Timeline metric read from ``results.json``.
POWER_METRIC = "power.device_instant"

# Tolerance when counting grid points below an end time read from float timestamps.
_GRID_EPS = 1e-6


def normalise_precision(value: object) -> str | None:
    """``"bfloat16"`` or ``"fp8"`` for the spellings of those, else None (unknown, not filtered)."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace("-", "").replace("_", "")
    if text in {"bfloat16", "bf16"}:
        return "bfloat16"
    if text.startswith(("fp8", "float8")):
        return "fp8"
    return None


def _run_name(run: LLMRun) -> str:
    path = getattr(run, "_results_path", "")
    return f"{run.model_id} batch {run.max_num_seqs} seed {run.seed}" + (f" ({path})" if path else "")


class MLEnergySource(TableSource):
    """Power traces, ITL mixtures and logistic fits from ML.ENERGY benchmark runs.

    Args:
        root: Compiled data folder holding ``runs/llm.parquet`` and the raw files it names.
        stable_only: Keep only runs the benchmark marked stable (the default).
        runs: Already loaded runs to use instead of reading `root` (then `root` only names
            the data in :attr:`description`).
    """

    def __init__(self, root: str | Path, *, stable_only: bool = True, runs: LLMRuns | None = None) -> None:
        super().__init__()
        if runs is None:
            self.root: Path | None = Path(root).expanduser().resolve()
            parquet = self.root / "runs" / "llm.parquet"
            if not parquet.is_file():
                raise FileNotFoundError(
                    f"ML.ENERGY data: {parquet} does not exist (expected a compiled benchmark copy)"
                )
            self.location = str(self.root)
            runs = LLMRuns.from_directory(self.root, stable_only=stable_only)
        else:
            self.root = None
            self.location = str(root)
        self.runs = runs
        self._selected: dict[str, dict[int, list[LLMRun]]] = {}
        self._extracted: dict[str, tuple[dict[int, PowerTrace], dict[int, ITLMixtureModel]]] = {}

    @classmethod
    def from_hf(
        cls, repo_id: str = "ml-energy/benchmark-v3", *, revision: str | None = None, stable_only: bool = True
    ) -> MLEnergySource:
        """Runs from the Hugging Face dataset through :meth:`LLMRuns.from_hf`.

        Needs internet access and, for the gated default dataset, access granted on
        huggingface.co and a token in ``HF_TOKEN``. Only the run summary is downloaded here;
        each run's raw files are fetched on first use (and cached under ``HF_HOME``).
        """
        runs = LLMRuns.from_hf(repo_id, revision=revision, stable_only=stable_only)
        return cls(f"hf://datasets/{repo_id}" + (f"@{revision}" if revision else ""), runs=runs)

    @property
    def description(self) -> str:
        return f"ML.ENERGY benchmark runs in {self.location}"

    def key(self, spec: ModelSpec) -> str:
        return spec.cache_hash()

    # -- run selection ------------------------------------------------------------------------
    def _filters(self, spec: ModelSpec) -> str:
        return (
            f"task={spec.task!r}, model_id={spec.model_id!r}, gpu_model={spec.gpu_model!r}, "
            f"num_gpus={spec.gpus_per_replica}, max_num_seqs in {list(spec.batch_sizes)}, precision={spec.precision!r}"
        )

    def _what_exists(self, spec: ModelSpec) -> str:
        """A short note on what the data hold for the spec's model id (for error messages)."""
        same = self.runs.model_id(spec.model_id)
        if not same:
            ids = sorted({r.model_id for r in self.runs})
            shown = ", ".join(repr(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
            return f"no runs of model_id {spec.model_id!r} at all; model ids present: {shown or 'none'}"
        configs: dict[tuple[str, str, int, str], set[int]] = defaultdict(set)
        for run in same:
            configs[(run.task, run.gpu_model, run.num_gpus, str(run.weight_precision))].add(int(run.max_num_seqs))
        listed = "; ".join(
            f"task={t!r} gpu_model={g!r} num_gpus={n} precision={p!r} batches {sorted(b)}"
            for (t, g, n, p), b in sorted(configs.items())
        )
        return f"runs of model_id {spec.model_id!r} exist for: {listed}"

    def _precision_matches(self, run: LLMRun, spec: ModelSpec) -> bool:
        recorded = normalise_precision(run.weight_precision)
        return recorded is None or recorded == spec.precision

    def select(self, spec: ModelSpec) -> dict[int, list[LLMRun]]:
        """The runs of a spec by batch size (sorted by seed); MissingDataError when none match."""
        key = self.key(spec)
        if key in self._selected:
            return self._selected[key]
        runs = (
            self.runs.task(spec.task)
            .model_id(spec.model_id)
            .gpu_model(spec.gpu_model)
            .num_gpus(spec.gpus_per_replica)
            .max_num_seqs(*spec.batch_sizes)
            .where(lambda run: self._precision_matches(run, spec))
        )
        if not runs:
            raise self.missing(spec, None, f"benchmark runs matching {self._filters(spec)} ({self._what_exists(spec)})")
        by_batch: dict[int, list[LLMRun]] = defaultdict(list)
        for run in runs:
            by_batch[int(run.max_num_seqs)].append(run)
        selected = {
            batch: sorted(group, key=lambda r: (r.seed if r.seed is not None else -1, getattr(r, "_results_path", "")))
            for batch, group in sorted(by_batch.items())
        }
        self._selected[key] = selected
        return selected

    # -- extraction ---------------------------------------------------------------------------
    def _timeline(self, run: LLMRun) -> tuple[np.ndarray, np.ndarray]:
        """(relative time, total W over the run's GPUs), sorted, unique, finite."""
        try:
            frame = run.timelines(metric=POWER_METRIC)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{self.description}: cannot read the {POWER_METRIC} timeline of run {_run_name(run)}: {exc}"
            ) from exc
        t = frame["relative_time_s"].to_numpy(float)
        p = frame["value"].to_numpy(float)
        keep = np.isfinite(t) & np.isfinite(p)
        t, p = t[keep], p[keep]
        order = np.argsort(t, kind="stable")
        t, p = t[order], p[order]
        t, first = np.unique(t, return_index=True)
        p = p[first]
        if t.size < 2:
            raise ValueError(
                f"{self.description}: run {_run_name(run)} has {t.size} power sample(s) in its steady state"
            )
        return t, p

    @staticmethod
    def _itl_samples(run: LLMRun) -> np.ndarray:
        try:
            return np.asarray(run.inter_token_latencies(), dtype=float)
        except ValueError:  # the library's "no valid ITL samples"
            return np.empty(0)

    def _median_trace(self, spec: ModelSpec, batch: int, timelines: list[tuple[np.ndarray, np.ndarray]]) -> PowerTrace:
        end = float(np.median([t[-1] for t, _ in timelines]))
        n_points = math.floor(end / GRID_STEP_S + _GRID_EPS) + 1
        grid = np.arange(n_points, dtype=float) * GRID_STEP_S
        resampled = np.vstack([np.interp(grid, t, p) for t, p in timelines])
        return PowerTrace(
            grid,
            np.median(resampled, axis=0),
            measured_gpus=spec.gpus_per_replica,
            source=f"{self.description}: {spec.model_id} batch {batch}, median of {len(timelines)} run(s)",
        )

    def _extract(self, spec: ModelSpec) -> tuple[dict[int, PowerTrace], dict[int, ITLMixtureModel]]:
        """Traces and ITL fits of a spec in one pass over its runs' raw files."""
        key = self.key(spec)
        if key in self._extracted:
            return self._extracted[key]
        traces: dict[int, PowerTrace] = {}
        itl: dict[int, ITLMixtureModel] = {}
        for batch, runs in self.select(spec).items():
            timelines = []
            samples = []
            for run in runs:
                timelines.append(self._timeline(run))
                samples.append(self._itl_samples(run))
                # results.json can be large; the library caches it per run, drop it once read.
                run.__dict__.pop("_results_json_cache", None)
            traces[batch] = self._median_trace(spec, batch, timelines)
            pooled = np.concatenate(samples) if samples else np.empty(0)
            pooled = pooled[np.isfinite(pooled) & (pooled > 0)]
            if pooled.size:
                itl[batch] = ITLMixtureModel.fit(pooled, max_samples=ITL_MAX_SAMPLES, seed=ITL_SEED)
        self._extracted[key] = (traces, itl)
        return traces, itl

    def _load_traces(self, spec: ModelSpec) -> dict[int, PowerTrace]:
        return self._extract(spec)[0]

    def _load_itl(self, spec: ModelSpec) -> dict[int, ITLMixtureModel]:
        return self._extract(spec)[1]

    def _load_logistic(self, spec: ModelSpec) -> LogisticFits | None:
        selected = self.select(spec)
        batches = sorted(selected)

        def median(field: str, divisor: float = 1.0) -> list[float]:
            return [float(np.median([float(getattr(r, field)) for r in selected[b]])) / divisor for b in batches]

        return fit_logistic_fits(
            spec.model_label,
            batches,
            median("avg_power_watts"),
            median("mean_itl_ms", 1000.0),
            median("output_throughput_tokens_per_sec"),
            exclude=spec.fit_exclude_batch_sizes,
        )
