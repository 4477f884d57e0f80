"""Shared test settings: hypothesis profiles and the ../shared reference material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from g2gsim.grid.feeders import FEEDER_DIRS_ENV
from g2gsim.resources import shared_reference_dir

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=30)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """`../shared/reference`, or skip the test when it is absent."""
    found = shared_reference_dir()
    if found is None:
        pytest.skip("../shared/reference is not available")
    return found


@pytest.fixture
def trusted_feeder_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let .dss feeders compile from the test's own folder and the reference feeders (g2gsim
    compiles .dss files only from trusted folders)."""
    reference = shared_reference_dir()
    folders = [tmp_path, *([reference] if reference is not None else [])]
    monkeypatch.setenv(FEEDER_DIRS_ENV, os.pathsep.join(str(f) for f in folders))
