"""OpenG2G data caches read as-is (v0.1 and v0.2 layouts) and written in v0.2 (SPEC 8.3).

v0.1 (one folder for all models, keyed by model label)::

    traces_summary.csv   model_label, num_gpus, max_num_seqs, trace_file
    traces/*.csv         relative_time_s, power_total_W
    latency_fits.csv     model_label, max_num_seqs, itl_dist, itl_mix_loc, ...
    logistic_fits.csv    model_label, metric, L, x0, k, b0

v0.2 (one folder per spec, named by :meth:`ModelSpec.cache_hash`)::

    <hash>/trace.csv          batch_size, relative_time_s, power_total_W
    <hash>/itl_fit.json       {"schema": "itl_fit.lognormal_mixture_2", "per_batch": {...}}
    <hash>/logistic_fit.json  {"schema": "logistic_v1", "power"|"latency"|"throughput": {...}}
    <hash>/_manifest.json     spec fields and provenance
"""

from __future__ import annotations

import datetime as _dt
import json
from abc import abstractmethod
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlenergy.data.modeling import ITLMixtureModel

from g2gsim.data.files import DamagedDataError, read_csv_file, read_json_file
from g2gsim.data.fits import LogisticFits
from g2gsim.data.source import DataSource
from g2gsim.data.traces import PowerTrace

if TYPE_CHECKING:
    from g2gsim.data.spec import ModelSpec

__all__ = [
    "ITL_SCHEMA",
    "LOGISTIC_SCHEMA",
    "TableSource",
    "V01CacheSource",
    "V02CacheSource",
    "is_v02_cache",
    "load_logistic_fits",
    "save_logistic_fits",
    "write_v02_cache",
]

ITL_SCHEMA = "itl_fit.lognormal_mixture_2"
#: The parameters of a logistic fit.
_PARAMS = ("L", "x0", "k", "b0")
LOGISTIC_SCHEMA = "logistic_v1"
MANIFEST_SCHEMA_VERSION = 1


def _read_csv(path: Path, required: Iterable[str], numeric: Iterable[str] = ()) -> pd.DataFrame:
    """A complete CSV with its required columns, or an error naming the file and the problem."""
    return read_csv_file(path, required, numeric=numeric, what="data cache file")


def _itl_model(fields: Any, where: str) -> ITLMixtureModel:
    """An ITL mixture from a fit's fields, or an error naming where the fit is."""
    try:
        return ITLMixtureModel.from_dict(fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise DamagedDataError(f"{where}: the ITL fit is malformed ({type(exc).__name__}: {exc})") from None


class TableSource(DataSource):
    """A source whose data sit in per-model tables, loaded lazily and kept in memory.

    Subclasses say how a spec maps to a key (label or content hash) and how to load the
    traces, ITL fits and logistic fits of one key.
    """

    def __init__(self) -> None:
        super().__init__()
        self._traces: dict[str, dict[int, PowerTrace]] = {}
        self._itl: dict[str, dict[int, ITLMixtureModel]] = {}
        self._logistic: dict[str, LogisticFits | None] = {}

    @abstractmethod
    def key(self, spec: ModelSpec) -> str:
        """The key of a spec's data in this source."""

    @abstractmethod
    def _load_traces(self, spec: ModelSpec) -> dict[int, PowerTrace]: ...

    @abstractmethod
    def _load_itl(self, spec: ModelSpec) -> dict[int, ITLMixtureModel]: ...

    @abstractmethod
    def _load_logistic(self, spec: ModelSpec) -> LogisticFits | None: ...

    def _traces_of(self, spec: ModelSpec) -> dict[int, PowerTrace]:
        key = self.key(spec)
        if key not in self._traces:
            self._traces[key] = self._load_traces(spec)
        return self._traces[key]

    def batch_sizes(self, spec: ModelSpec) -> tuple[int, ...]:
        return tuple(sorted(self._traces_of(spec)))

    def trace(self, spec: ModelSpec, batch: int) -> PowerTrace:
        trace = self._traces_of(spec).get(int(batch))
        if trace is None:
            raise self.missing(spec, batch, "power trace")
        return trace

    def itl_fit(self, spec: ModelSpec, batch: int) -> ITLMixtureModel | None:
        key = self.key(spec)
        if key not in self._itl:
            self._itl[key] = self._load_itl(spec)
        return self._itl[key].get(int(batch))

    def logistic_fits(self, spec: ModelSpec) -> LogisticFits:
        key = self.key(spec)
        if key not in self._logistic:
            self._logistic[key] = self._load_logistic(spec)
        fits = self._logistic[key]
        if fits is None:
            raise self.missing(spec, None, "logistic fits")
        return fits


class V01CacheSource(TableSource):
    """An OpenG2G v0.1 cache folder (all models in shared CSVs, keyed by model label)."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder).resolve()
        self._summary = _read_csv(
            self.folder / "traces_summary.csv",
            ("model_label", "num_gpus", "max_num_seqs", "trace_file"),
            numeric=("num_gpus", "max_num_seqs"),
        )
        latency = self.folder / "latency_fits.csv"
        if not latency.is_file():  # without it every ITL would be unknown and the throughput 0
            raise FileNotFoundError(
                f"data cache file {latency} does not exist; a v0.1 cache needs it for the ITL of every model"
            )
        self._latency: pd.DataFrame | None = None
        self._fits: pd.DataFrame | None = None

    @property
    def description(self) -> str:
        return f"OpenG2G v0.1 cache {self.folder}"

    def key(self, spec: ModelSpec) -> str:
        return spec.model_label

    def _load_traces(self, spec: ModelSpec) -> dict[int, PowerTrace]:
        rows = self._summary[self._summary["model_label"] == spec.model_label]
        traces = {}
        for row in rows.itertuples(index=False):
            path = self.folder / str(row.trace_file)
            frame = _read_csv(path, ("relative_time_s", "power_total_W"), numeric=("relative_time_s", "power_total_W"))
            traces[int(row.max_num_seqs)] = PowerTrace(
                frame["relative_time_s"].to_numpy(float),
                frame["power_total_W"].to_numpy(float),
                measured_gpus=int(row.num_gpus),
                source=str(path),
            )
        return traces

    def _load_itl(self, spec: ModelSpec) -> dict[int, ITLMixtureModel]:
        path = self.folder / "latency_fits.csv"
        if self._latency is None:
            self._latency = _read_csv(path, ("model_label", "max_num_seqs"), numeric=("max_num_seqs",))
        rows = self._latency[self._latency["model_label"] == spec.model_label]
        return {
            int(row["max_num_seqs"]): _itl_model(row, f"{path} model {spec.model_label!r} row {i + 2}")
            for i, row in rows.iterrows()
        }

    def _load_logistic(self, spec: ModelSpec) -> LogisticFits | None:
        path = self.folder / "logistic_fits.csv"
        if self._fits is None:
            if not path.is_file():
                return None
            self._fits = _read_csv(path, ("model_label", "metric", *_PARAMS), numeric=_PARAMS)
        rows = self._fits[self._fits["model_label"] == spec.model_label]
        if rows.empty:
            return None
        by_metric = {str(r["metric"]): {p: float(r[p]) for p in _PARAMS} for _, r in rows.iterrows()}
        return LogisticFits.from_dict(by_metric, where=f"{path} model {spec.model_label!r}")


def is_v02_cache(folder: Path) -> bool:
    """Whether a folder holds per-spec v0.2 subfolders."""
    return any(
        (child / "trace.csv").is_file() or (child / "itl_fit.json").is_file()
        for child in folder.iterdir()
        if child.is_dir()
    )


class V02CacheSource(TableSource):
    """An OpenG2G v0.2 cache: one ``<cache_hash>/`` folder per spec."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder).resolve()

    @property
    def description(self) -> str:
        return f"OpenG2G v0.2 cache {self.folder}"

    def key(self, spec: ModelSpec) -> str:
        return spec.cache_hash()

    def _spec_dir(self, spec: ModelSpec) -> Path:
        return self.folder / spec.cache_hash()

    def _load_traces(self, spec: ModelSpec) -> dict[int, PowerTrace]:
        path = self._spec_dir(spec) / "trace.csv"
        if not path.is_file():
            raise self.missing(spec, None, f"trace.csv (looked in {path.parent}, the spec's cache hash folder)")
        columns = ("batch_size", "relative_time_s", "power_total_W")
        frame = _read_csv(path, columns, numeric=columns)
        return {
            int(batch): PowerTrace(
                group["relative_time_s"].to_numpy(float),
                group["power_total_W"].to_numpy(float),
                measured_gpus=spec.gpus_per_replica,
                source=f"{path} batch {batch}",
            )
            for batch, group in frame.groupby("batch_size", sort=True)
        }

    def _read_json(self, spec: ModelSpec, name: str, schema: str) -> dict[str, Any] | None:
        path = self._spec_dir(spec) / name
        if not path.is_file():
            return None
        return _schema_json(path, schema)

    def _load_itl(self, spec: ModelSpec) -> dict[int, ITLMixtureModel]:
        payload = self._read_json(spec, "itl_fit.json", ITL_SCHEMA)
        path = self._spec_dir(spec) / "itl_fit.json"
        if payload is None:
            if (self._spec_dir(spec) / "trace.csv").is_file():  # traces without latency: throughput would be 0
                raise FileNotFoundError(f"data cache file {path} does not exist; the model's ITL needs it")
            return {}
        per_batch = payload.get("per_batch", {})
        if not isinstance(per_batch, dict):
            raise DamagedDataError(f"{path}: per_batch must be a table of fits by batch size")
        return {int(b): _itl_model(p, f"{path} batch {b}") for b, p in per_batch.items()}

    def _load_logistic(self, spec: ModelSpec) -> LogisticFits | None:
        payload = self._read_json(spec, "logistic_fit.json", LOGISTIC_SCHEMA)
        if payload is None:
            return None
        return LogisticFits.from_dict(payload, where=str(self._spec_dir(spec) / "logistic_fit.json"))


def save_logistic_fits(fits: LogisticFits, spec: ModelSpec, folder: str | Path) -> Path:
    """Write one model's fits as ``<folder>/<cache_hash>/logistic_fit.json`` (OpenG2G schema)."""
    path = Path(folder).resolve() / spec.cache_hash() / "logistic_fit.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"schema": LOGISTIC_SCHEMA, "model_label": spec.model_label, **fits.to_dict()}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


def load_logistic_fits(spec: ModelSpec, folder: str | Path) -> LogisticFits:
    """Read fits saved by :func:`save_logistic_fits` (or by OpenG2G) for this spec."""
    path = Path(folder).resolve() / spec.cache_hash() / "logistic_fit.json"
    if not path.is_file():
        raise FileNotFoundError(f"no logistic fits for model {spec.model_label!r}: {path} does not exist")
    return LogisticFits.from_dict(_schema_json(path, LOGISTIC_SCHEMA), where=str(path))


def _schema_json(path: Path, schema: str) -> dict[str, Any]:
    """A JSON table of the given schema, or an error naming the file."""
    payload = read_json_file(path, what="data cache file")
    if not isinstance(payload, dict) or payload.get("schema") != schema:
        found = payload.get("schema") if isinstance(payload, dict) else type(payload).__name__
        raise DamagedDataError(f"{path}: schema {found!r}, expected {schema!r}")
    return payload


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def write_v02_cache(source: DataSource, specs: Iterable[ModelSpec], folder: str | Path) -> Path:
    """Write what `source` knows about `specs` as a v0.2 cache under `folder`; returns it.

    Any source converts this way (bundled, v0.1, ML.ENERGY), so a slow pipeline runs once.
    Files of other specs already in the folder are left alone.
    """
    root = Path(folder).resolve()
    for spec in specs:
        spec_dir = root / spec.cache_hash()
        spec_dir.mkdir(parents=True, exist_ok=True)
        batches = source.batch_sizes(spec)
        frames = []
        for batch in batches:
            trace = source.trace(spec, batch)
            # v0.2 stores power of one replica's GPUs; rescale if measured on another count.
            scale = spec.gpus_per_replica / trace.measured_gpus
            frames.append(
                pd.DataFrame(
                    {"batch_size": batch, "relative_time_s": trace.t_s, "power_total_W": trace.power_w * scale}
                )
            )
        pd.concat(frames, ignore_index=True).to_csv(spec_dir / "trace.csv", index=False)
        per_batch = {str(b): fit.to_dict() for b in batches if (fit := source.itl_fit(spec, b)) is not None}
        itl = {"schema": ITL_SCHEMA, "model_label": spec.model_label, "per_batch": per_batch}
        (spec_dir / "itl_fit.json").write_text(json.dumps(itl, indent=2, sort_keys=True))
        try:
            fits = source.logistic_fits(spec)
        except LookupError:
            fits = None
        if fits is not None:
            save_logistic_fits(fits, spec, root)
        manifest = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "spec_hash": spec.cache_hash(),
            "spec": spec.model_dump(mode="json"),
            "source": source.description,
            "synthetic": source.is_synthetic,
            "g2gsim_version": _package_version("g2gsim"),
            "mlenergy_data_version": _package_version("mlenergy-data"),
            "written_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        (spec_dir / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return root
