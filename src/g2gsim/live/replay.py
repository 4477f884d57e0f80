"""Record a live run as an offline data source, and rerun the scenario offline from it.

Recording (:func:`write_recording`): from a live run's tables, for every model of every live
site and every batch size the server ran, the steps at that batch (after `settle_s` seconds
from a batch change, with no server down and no meter stale) give

- a power trace: per step, the model's metered GPUs summed and divided by its real replicas
  (real GPUs / GPUs per replica), so ``trace.csv`` holds one replica's power as OpenG2G's
  v0.2 layout does;
- an ITL fit of the ITL samples of those steps (:func:`fit_itl`).

They are written with :func:`g2gsim.data.caches.write_v02_cache`, so the folder is a v0.2
cache any scenario can name as its ``data``. Batch sizes the run never measured, the
logistic fits (what controllers plan with) and models of other sites come from the run's
own data source, as the live run used them; ``recording.json`` says which batches were
measured (samples, seconds) and which were filled.

Replay (:func:`replay`): the live scenario without its ``[sites.live]`` tables, its data
the recording, rerun offline with the same seed; :func:`compare_power` scores the two
power traces step by step.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlenergy.data.modeling import ITLMixtureModel

from g2gsim.data import DataSource, open_data_source
from g2gsim.data.caches import write_v02_cache
from g2gsim.data.traces import MIN_TRACE_SAMPLES, PowerTrace
from g2gsim.live.tables import gpu_column
from g2gsim.scenarios.model import Scenario, SiteSection

if TYPE_CHECKING:
    from g2gsim.data.fits import LogisticFits
    from g2gsim.data.spec import ModelSpec
    from g2gsim.scenarios.runner import ScenarioRun

__all__ = [
    "RECORDING_FOLDER",
    "RecordedSource",
    "ReplayComparison",
    "compare_power",
    "replay",
    "replay_scenario",
    "scenario_data",
    "write_recording",
]

#: Folder of a live run's output that holds its recording.
RECORDING_FOLDER = "recording"
#: What was measured and what was filled, next to the cache's per-spec folders.
RECORDING_INFO = "recording.json"
#: Seconds after a batch change before the power and ITL count for the new batch.
SETTLE_S = 2.0
#: ITL samples a batch needs for its own fit (fewer: the data source's fit is kept).
MIN_ITL_SAMPLES = 20
#: A mixture fit whose mean misses the samples' mean by more than this fraction, or whose
#: standard deviation exceeds theirs by more than this factor, is not used.
FIT_MEAN_TOLERANCE = 0.25
FIT_SD_FACTOR = 2.0


def fit_itl(samples: np.ndarray) -> tuple[ITLMixtureModel, str]:
    """An ITL model of per-token samples, s, and how it was made.

    ``mlenergy``'s two-lognormal mixture first. The offline site draws a fleet's average
    ITL from the model's mean and variance, so when the mixture misses them (its EM can put
    a wide component on a few outliers) one lognormal with the samples' mean and variance is
    used instead.
    """
    fit = ITLMixtureModel.fit(samples, seed=0)
    mean, var = fit.mean_var()
    target = float(samples.mean())
    spread = float(samples.std())
    if (
        math.isfinite(mean)
        and math.isfinite(var)
        and abs(mean - target) <= FIT_MEAN_TOLERANCE * target
        and math.sqrt(var) <= FIT_SD_FACTOR * max(spread, 1e-9)
    ):
        return fit, "lognormal mixture"
    sigma = math.sqrt(math.log1p(float(samples.var()) / target**2))
    scale = target * math.exp(-0.5 * sigma**2)
    one = ITLMixtureModel(
        loc=0.0,
        pi_steady=1.0,
        sigma_steady=sigma,
        scale_steady=scale,
        pi_stall=0.0,
        sigma_stall=sigma,
        scale_stall=scale,
    )
    return one, "one lognormal (moments; the mixture missed the mean or the spread)"


def scenario_data(scenario: Scenario) -> DataSource:
    """The data source a scenario names (bundled when it names none)."""
    return open_data_source(None if scenario.data in (None, "bundled") else Path(scenario.data))


@dataclass
class _Measured:
    """What a live run measured for one model spec, by batch size."""

    traces: dict[int, PowerTrace] = field(default_factory=dict)
    fits: dict[int, ITLMixtureModel] = field(default_factory=dict)
    info: dict[int, dict[str, Any]] = field(default_factory=dict)


class RecordedSource(DataSource):
    """A live run's measurements over the data source it ran with (which fills the rest)."""

    def __init__(self, base: DataSource, measured: Mapping[str, _Measured], description: str) -> None:
        super().__init__()
        self.base = base
        self._measured = dict(measured)
        self._description = description

    @property
    def description(self) -> str:
        return self._description

    def _of(self, spec: ModelSpec) -> _Measured:
        return self._measured.get(spec.cache_hash(), _Measured())

    def batch_sizes(self, spec: ModelSpec) -> tuple[int, ...]:
        try:
            base = set(self.base.batch_sizes(spec))
        except LookupError:
            base = set()
        return tuple(sorted(base | set(self._of(spec).traces)))

    def trace(self, spec: ModelSpec, batch: int) -> PowerTrace:
        measured = self._of(spec).traces.get(int(batch))
        return measured if measured is not None else self.base.trace(spec, batch)

    def itl_fit(self, spec: ModelSpec, batch: int) -> ITLMixtureModel | None:
        measured = self._of(spec).fits.get(int(batch))
        return measured if measured is not None else self.base.itl_fit(spec, batch)

    def logistic_fits(self, spec: ModelSpec) -> LogisticFits:
        return self.base.logistic_fits(spec)


def _settled_steps(state: pd.DataFrame, label: str, dt: float, settle_s: float) -> np.ndarray:
    """Steps that count as measurements of the batch they ran: not within `settle_s` of a batch
    change (the run's first batch was settled during the warm-up), no server down, no stale meter."""
    batch = state[f"{label}.batch"].to_numpy()
    k = np.arange(batch.size)
    changed = np.flatnonzero(np.diff(batch) != 0) + 1
    last_change = np.zeros(batch.size, dtype=np.int64) - 10**9
    if changed.size:
        marks = np.zeros(batch.size, dtype=np.int64) - 10**9
        marks[changed] = changed
        last_change = np.maximum.accumulate(marks)
    settled = (k - last_change) * dt >= settle_s
    for flag in ("server_down", "power_stale"):
        column = f"{label}.{flag}"
        if column in state:
            settled &= ~state[column].to_numpy(dtype=bool)
    return settled


def _per_token(itl: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Samples drawn (seeded) with probability proportional to the tokens each stands for, so
    their distribution is the per-token one (a step with few tokens weighs little)."""
    if itl.size == 0 or np.allclose(tokens, tokens[0]):
        return itl
    size = int(min(max(itl.size, tokens.sum()), 50_000))
    return np.random.default_rng(0).choice(itl, size=size, p=tokens / tokens.sum())


def _measure_model(
    site: SiteSection, label: str, spec: ModelSpec, tables: Mapping[str, pd.DataFrame], settle_s: float
) -> _Measured:
    """The traces, ITL fits and counts of one model of a live site."""
    assert site.live is not None
    state = tables[f"{site.name}/state"]
    gpus = tables[f"{site.name}/gpu_power"]
    dt = float(site.period_s)
    columns = [gpu_column(label, endpoint, gpu) for endpoint, gpu in site.live.server(label).gpus]
    real_replicas = len(columns) / spec.gpus_per_replica
    replica_w = gpus[columns].to_numpy(dtype=float).sum(axis=1) / real_replicas
    settled = _settled_steps(state, label, dt, settle_s) & np.isfinite(replica_w)
    batch = state[f"{label}.batch"].to_numpy()
    empty = pd.DataFrame(columns=["time_s", "model", "batch", "itl_s", "tokens"])
    samples = tables.get(f"{site.name}/itl_samples", empty)
    samples = samples[samples["model"] == label]
    sample_step = np.rint(samples["time_s"].to_numpy(dtype=float) / dt).astype(np.int64)
    measured = _Measured()
    for b in sorted(set(batch[settled].tolist())):
        steps = np.flatnonzero(settled & (batch == b))
        if steps.size < MIN_TRACE_SAMPLES:
            continue
        power = replica_w[steps]
        measured.traces[int(b)] = PowerTrace(
            np.arange(steps.size) * dt, power, measured_gpus=spec.gpus_per_replica, source=f"live {site.name} {label}"
        )
        mine = np.isin(sample_step, steps) & (samples["batch"].to_numpy() == b)
        itl = _per_token(samples["itl_s"].to_numpy(dtype=float)[mine], samples["tokens"].to_numpy(dtype=float)[mine])
        how = "data source"
        if itl.size >= MIN_ITL_SAMPLES:
            measured.fits[int(b)], how = fit_itl(itl)
        measured.info[int(b)] = {
            "power_samples": int(steps.size),
            "seconds": round(steps.size * dt, 6),
            "mean_replica_power_w": float(power.mean()),
            "itl_samples": int(mine.sum()),
            "mean_itl_s": float(itl.mean()) if itl.size else None,
            "itl_fit": how,
        }
    return measured


def write_recording(
    scenario: Scenario,
    tables: Mapping[str, pd.DataFrame],
    folder: str | Path,
    *,
    data: DataSource | None = None,
    settle_s: float = SETTLE_S,
) -> Path:
    """Write what the live sites of a run measured as an OpenG2G v0.2 cache under `folder`.

    `tables` are the run's (``result.tables``, keyed ``"<site>/<table>"``); `data` is the
    source the run used (default: the scenario's). Every model of every site is written, so
    the folder alone is the replay's data. Returns the folder.
    """
    from g2gsim.scenarios.build import model_catalogue

    base = data if data is not None else scenario_data(scenario)
    catalogue = model_catalogue(scenario)
    measured: dict[str, _Measured] = {}
    summary: dict[str, dict[str, Any]] = {}
    specs: dict[str, ModelSpec] = {}
    for site in scenario.sites:
        for entry in site.models:
            spec = entry.spec(catalogue)
            specs[spec.cache_hash()] = spec
            if site.live is None:
                continue
            found = _measure_model(site, entry.model, spec, tables, settle_s)
            measured[spec.cache_hash()] = found
            summary.setdefault(site.name, {})[entry.model] = {
                "cache_hash": spec.cache_hash(),
                "measured_batches": {str(b): info for b, info in found.info.items()},
            }
    if not measured:
        raise ValueError(f"scenario {scenario.name!r} has no live site: nothing to record")
    description = f"live recording of {scenario.name} (filled from {base.description})"
    source = RecordedSource(base, measured, description)
    root = write_v02_cache(source, specs.values(), folder)
    for site_models in summary.values():
        for model in site_models.values():
            spec = specs[model["cache_hash"]]
            model["filled_batches"] = [b for b in source.batch_sizes(spec) if str(b) not in model["measured_batches"]]
    info = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "settle_s": settle_s,
        "filled_from": base.description,
        "logistic_fits": "from the data source the live run used",
        "sites": summary,
        "written_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    (root / RECORDING_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))
    return root


def replay_scenario(scenario: Scenario, recording: str | Path) -> Scenario:
    """The live scenario as an offline one: no ``[sites.live]`` tables, the recording as data."""
    raw = scenario.to_dict()
    for site in raw["sites"]:
        site.pop("live", None)
    raw["data"] = str(Path(recording).resolve())
    return Scenario.from_dict(raw, source=f"{scenario.name} (replay of a live recording)", folder=scenario.folder)


def compare_power(live: pd.DataFrame, replay: pd.DataFrame) -> dict[str, float]:
    """Site power (three phases summed) of a live run against its replay, over common steps:
    means, mean and largest absolute difference, and their ratio to the live mean."""
    phases = ["power_a_w", "power_b_w", "power_c_w"]
    n = min(len(live), len(replay))
    a = live[phases].to_numpy(dtype=float)[:n].sum(axis=1)
    b = replay[phases].to_numpy(dtype=float)[:n].sum(axis=1)
    diff = np.abs(a - b)
    mean = float(a.mean()) if n else math.nan
    return {
        "steps": float(n),
        "live_mean_kw": mean / 1e3,
        "replay_mean_kw": float(b.mean()) / 1e3 if n else math.nan,
        "mean_abs_diff_kw": float(diff.mean()) / 1e3 if n else math.nan,
        "max_abs_diff_kw": float(diff.max()) / 1e3 if n else math.nan,
        "mean_abs_diff_fraction": float(diff.mean()) / mean if n and mean else math.nan,
        "mean_diff_fraction": float((b - a).mean()) / mean if n and mean else math.nan,
    }


@dataclass
class ReplayComparison:
    """A live run and its offline replay: both runs' metrics and each live site's power comparison."""

    live_metrics: dict[str, Any]
    replay: ScenarioRun
    power: dict[str, dict[str, float]]

    @property
    def replay_metrics(self) -> dict[str, Any]:
        return dict(self.replay.metrics)


def replay(run_dir: str | Path, *, out: str | Path | None = None, plots: bool = False) -> ReplayComparison:
    """Rerun the live run written to `run_dir` offline from its recording; compare the two.

    `run_dir` is a live run's ``--out`` folder (``scenario.toml``, ``metrics.json``,
    ``results/``, ``recording/``); the replay is written to `out` (default ``run_dir/replay``).
    """
    from g2gsim.kernel.results import RunResult
    from g2gsim.scenarios.runner import run_scenario

    folder = Path(run_dir)
    recording = folder / RECORDING_FOLDER
    needed = [folder / "scenario.toml", folder / "metrics.json", folder / "results", recording]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a recorded live run (missing {missing}); record one with "
            f"`g2gsim run --live SCENARIO --out {folder}`"
        )
    live = Scenario.from_toml(folder / "scenario.toml")
    if not live.is_live:
        raise ValueError(f"{folder / 'scenario.toml'}: scenario {live.name!r} has no live site; nothing to replay")
    run = run_scenario(replay_scenario(live, recording), out=Path(out) if out else folder / "replay", plots=plots)
    live_result = RunResult.from_parquet(folder / "results")
    power = {
        site.name: compare_power(live_result.table(f"{site.name}/state"), run.result.table(f"{site.name}/state"))
        for site in live.sites
        if site.live is not None
    }
    return ReplayComparison(json.loads((folder / "metrics.json").read_text()), run, power)
