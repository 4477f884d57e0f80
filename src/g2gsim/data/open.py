"""Open a data source by location: the bundled dataset, an OpenG2G cache or ML.ENERGY runs."""

from __future__ import annotations

from pathlib import Path

from g2gsim.data.bundled import BundledSyntheticSource
from g2gsim.data.caches import V01CacheSource, V02CacheSource, is_v02_cache
from g2gsim.data.source import DataSource

__all__ = ["open_data_source"]


def open_data_source(path: str | Path | None = None) -> DataSource:
    """Open data by location: None (or "bundled") for the bundled synthetic dataset, else a folder.

    The folder's layout picks the backend: ``traces_summary.csv`` (OpenG2G v0.1 cache),
    ``runs/llm.parquet`` (a local ML.ENERGY benchmark copy), per-spec ``<hash>/`` folders or a
    ``specs/`` folder of them (OpenG2G v0.2 cache).
    """
    if path is None or str(path) in {"bundled", "synthetic"}:
        return BundledSyntheticSource()
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data: {folder} is not a folder (give a data cache or ML.ENERGY folder, or omit for bundled data)"
        )
    if (folder / "traces_summary.csv").is_file():
        return V01CacheSource(folder)
    if (folder / "runs" / "llm.parquet").is_file():
        from g2gsim.data.mlenergy import MLEnergySource  # mlenergy's loaders are imported only when used

        return MLEnergySource(folder)
    if is_v02_cache(folder):
        return V02CacheSource(folder)
    if (folder / "specs").is_dir() and is_v02_cache(folder / "specs"):
        return V02CacheSource(folder / "specs")
    raise ValueError(
        f"data: {folder} has no recognised layout; expected traces_summary.csv (OpenG2G v0.1 cache), "
        "runs/llm.parquet (ML.ENERGY benchmark copy) or <spec-hash>/trace.csv folders (OpenG2G v0.2 cache)"
    )
