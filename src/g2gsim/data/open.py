"""Open a data source by location: the bundled dataset, an OpenG2G cache or ML.ENERGY runs."""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from g2gsim.data.bundled import BundledSyntheticSource
from g2gsim.data.caches import V01CacheSource, V02CacheSource, is_v02_cache
from g2gsim.data.source import DataSource

__all__ = ["data_fingerprint", "open_data_source"]

#: Files of the package that make up the bundled dataset.
_BUNDLED_FILES = ("bundled_curves.csv", "bundled_fits.json")
_fingerprints: dict[tuple[object, ...], str] = {}


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


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, modification time) of every file under `folder`, sorted."""
    entries = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            stat = path.stat()
            entries.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return sorted(entries)


def data_fingerprint(path: str | Path | None = None) -> str:
    """A SHA-256 of the data a run reads: every file's name and content under a data folder
    (None or "bundled": the package's bundled dataset). Changed data gives a new fingerprint;
    a folder whose files did not change (same names, sizes and times) is hashed once per process."""
    digest = hashlib.sha256()
    if path is None or str(path) in {"bundled", "synthetic"}:
        package = resources.files("g2gsim.data")
        for name in _BUNDLED_FILES:
            digest.update(name.encode() + b"\0" + package.joinpath(name).read_bytes())
        return digest.hexdigest()
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"data: {folder} is not a folder")
    listing = _listing(folder)
    key = (str(folder), *listing)
    cached = _fingerprints.get(key)
    if cached is not None:
        return cached
    for relative, _, _ in listing:
        digest.update(relative.encode() + b"\0")
        with open(folder / relative, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    _fingerprints[key] = digest.hexdigest()
    return _fingerprints[key]
