"""Find scenario files: a path, or the bare name of a bundled preset in ``processes/``."""

from __future__ import annotations

from pathlib import Path

from g2gsim.resources import processes_dir
from g2gsim.scenarios.model import Scenario, ScenarioError


def bundled_scenarios() -> dict[str, Path]:
    """Bundled scenario names -> files, sorted by name."""
    return {p.stem: p for p in sorted(processes_dir().glob("*.toml"))}


def resolve_scenario(name_or_path: str | Path) -> Path:
    """The file of a scenario given as a path or as a bundled name (with or without .toml)."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate.resolve()
    bundled = bundled_scenarios()
    stem = candidate.name.removesuffix(".toml")
    if stem in bundled and len(candidate.parts) == 1:
        return bundled[stem]
    raise ScenarioError(
        f"no scenario file {str(name_or_path)!r} and no bundled scenario of that name; "
        f"bundled: {', '.join(bundled) or '(none)'}"
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A validated scenario from a path or a bundled name (e.g. ``"ieee13_ofo_notap"``)."""
    return Scenario.from_toml(resolve_scenario(name_or_path))
