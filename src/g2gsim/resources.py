"""Locate the project's bundled files (feeders, scenario presets) in a wheel or a checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _bundled_dir(name: str) -> Path:
    """Return the installed copy (wheel) of a top-level project folder, else the checkout's."""
    installed = _PACKAGE_DIR / "_bundled" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parents[1] / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"g2gsim's bundled folder {name!r} was found neither in the installed package "
        f"({installed}) nor in a source checkout ({checkout})"
    )


@cache
def feeders_dir() -> Path:
    """Folder that holds the project's own feeder definitions."""
    return _bundled_dir("feeders")


@cache
def processes_dir() -> Path:
    """Folder that holds the ready-to-run scenario files."""
    return _bundled_dir("processes")


def shared_reference_dir() -> Path | None:
    """The `../shared/reference` yardsticks next to a checkout, if present (tests, benchmarks)."""
    for base in (Path.cwd(), _PACKAGE_DIR.parents[1]):
        for candidate in (base / ".." / "shared" / "reference", base / "shared" / "reference"):
            if candidate.is_dir():
                return candidate.resolve()
    return None
