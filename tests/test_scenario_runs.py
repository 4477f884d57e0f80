"""Running a scenario safely: paths relative to the file, trusted feeder files, output folders that
never mix runs, a memory estimate checked up front, and a warning when the horizon misses every event."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from g2gsim.grid.errors import GridError
from g2gsim.grid.feeders import FEEDER_DIRS_ENV, check_feeder_file, load_feeder
from g2gsim.kernel import RunResult
from g2gsim.kernel.streaming import read_chunks
from g2gsim.scenarios import Scenario, ScenarioError, bundled_scenarios, load_scenario, run_scenario
from g2gsim.scenarios.build import build_simulation
from g2gsim.scenarios.checks import (
    HorizonWarning,
    MemoryLimitError,
    estimate_memory,
    horizon_note,
    parse_bytes,
    scheduled_events,
)
from g2gsim.scenarios.outputs import MANIFEST, OutputFolderError

TINY_DSS = """Clear
New Circuit.tiny basekv=4.16 pu=1.0 phases=3 bus1=sourcebus
New Line.l1 bus1=sourcebus bus2=671 phases=3 length=0.1 units=km
Set voltagebases=[4.16]
Calcvoltagebases
"""

TINY_SCENARIO = """name = "tiny"
horizon_s = 1
data = "{data}"
[grid]
feeder = "{feeder}"
[[sites]]
name = "dc"
bus = "671"
capacity_gpus = 800
models = [{{ model = "Llama-3.1-8B", replicas = 10 }}]
[[sites.training]]
n_gpus = 8
t_start_s = 0.5
t_end_s = 0.8
trace = "{trace}"
"""


def _write_training_trace(path: Path) -> None:
    pd.DataFrame({"t_s": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "power_W": [100.0] * 6}).to_csv(path, index=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scenario folder: the scenario names its feeder, data and training trace by relative paths."""
    folder = tmp_path / "project"
    (folder / "inputs").mkdir(parents=True)
    (folder / "inputs" / "tiny.dss").write_text(TINY_DSS)
    _write_training_trace(folder / "inputs" / "train.csv")
    from g2gsim.data.bundled import BundledSyntheticSource
    from g2gsim.data.caches import write_v02_cache
    from g2gsim.data.spec import PAPER_MODELS

    write_v02_cache(BundledSyntheticSource(), [PAPER_MODELS["Llama-3.1-8B"]], folder / "inputs" / "cache")
    text = TINY_SCENARIO.format(data="inputs/cache", feeder="inputs/tiny.dss", trace="inputs/train.csv")
    (folder / "tiny.toml").write_text(text)
    return folder


# -- paths ---------------------------------------------------------------------------------------
def test_paths_in_a_scenario_file_are_relative_to_the_file(project: Path, tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    scenario = load_scenario(project / "tiny.toml")
    assert scenario.data == str(project / "inputs" / "cache")
    assert scenario.grid.feeder == str(project / "inputs" / "tiny.dss")
    assert scenario.sites[0].training[0].trace == str(project / "inputs" / "train.csv")
    run = run_scenario(scenario, out=elsewhere / "out", plots=False)
    assert "OpenG2G v0.2 cache" in run.metrics["data_source"]


def test_the_scenario_written_beside_results_reruns_from_anywhere(project: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    first = run_scenario(load_scenario("tiny.toml"), out=tmp_path / "out", plots=False)
    written = tmp_path / "out" / "scenario.toml"
    assert str(project / "inputs" / "tiny.dss") in written.read_text()
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(written, moved / "scenario.toml")
    monkeypatch.chdir(tmp_path)
    again = run_scenario(load_scenario(moved / "scenario.toml"), plots=False)
    assert again.metrics["worst_vmin"] == first.metrics["worst_vmin"]


# -- .dss files are code ---------------------------------------------------------------------------
def test_a_dss_feeder_beside_its_scenario_file_is_trusted(project: Path) -> None:
    run = run_scenario(load_scenario(project / "tiny.toml"), plots=False)
    assert run.metrics["n_grid_states"] == 10


def test_a_dss_feeder_outside_the_trusted_folders_is_refused(project: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(FEEDER_DIRS_ENV, raising=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.dss").write_text(TINY_DSS + f"Save Circuit Dir={tmp_path / 'written'}\n")
    other = project.parent / "other"
    other.mkdir()
    text = (project / "tiny.toml").read_text().replace("inputs/tiny.dss", str(outside / "evil.dss"))
    text = text.replace('"inputs/', f'"{project}/inputs/')
    (other / "evil.toml").write_text(text)
    with pytest.raises(ScenarioError, match=r"evil\.dss: not in a folder g2gsim compiles \.dss files from"):
        build_simulation(load_scenario(other / "evil.toml"))
    assert not (tmp_path / "written").exists()
    with pytest.raises(GridError, match="a .dss file is code"):
        load_feeder("/etc/passwd")


def test_a_named_feeder_folder_is_trusted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(FEEDER_DIRS_ENV, raising=False)
    folder = tmp_path / "named"
    folder.mkdir()
    (folder / "tiny.dss").write_text(TINY_DSS)
    with pytest.raises(GridError):
        check_feeder_file(folder / "tiny.dss")
    monkeypatch.setenv(FEEDER_DIRS_ENV, str(folder))
    assert check_feeder_file(folder / "tiny.dss") == (folder / "tiny.dss").resolve()
    link = tmp_path / "link.dss"
    link.symlink_to("/etc/passwd")
    monkeypatch.setenv(FEEDER_DIRS_ENV, str(tmp_path))
    with pytest.raises(GridError):  # a link cannot lead out of a trusted folder
        check_feeder_file(link)


# -- output folders --------------------------------------------------------------------------------
def _short(name: str, horizon_s: float) -> Scenario:
    return load_scenario(name).with_overrides(horizon_s=horizon_s)


@pytest.mark.slow
def test_rerunning_into_an_output_folder_never_mixes_two_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_scenario(_short("ieee13_ofo_notap", 60), out=out, chunk_s=10)
    assert (out / "plots").is_dir() and (out / MANIFEST).is_file()
    run_scenario(_short("ieee13_ofo_notap", 12), out=out, chunk_s=5, plots=False)
    assert not (out / "plots").exists(), "the first run's plots are gone with it"
    result = RunResult.from_parquet(out / "results")
    assert result.table("dc/state")["time_s"].max() == pytest.approx(11.9)
    assert json.loads((out / "metrics.json").read_text())["horizon_s"] == 12


def test_an_output_folder_with_foreign_files_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"notes\.txt"):
        run_scenario(_short("ieee13_baseline_notap", 1), out=out, plots=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_file_or_unwritable_output_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        run_scenario(_short("ieee13_baseline_notap", 1), out=tmp_path / "afile", plots=False)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputFolderError, match="not writable"):
            run_scenario(_short("ieee13_baseline_notap", 1), out=locked, plots=False)


def test_streamed_chunks_go_once_the_final_tables_hold_every_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_scenario(_short("ieee13_baseline_notap", 4), out=out, chunk_s=1, plots=False)
    assert not (out / "chunks").exists()
    with pytest.raises(FileNotFoundError):
        read_chunks(out)


# -- the horizon against the scenario's events -----------------------------------------------------
def test_a_horizon_before_the_first_scheduled_event_warns() -> None:
    scenario = _short("ieee13_ofo_tapchange", 2)
    events = scheduled_events(scenario)
    assert events[0].t_s == 1000 and "training" in events[0].what
    assert any(e.t_s == 1500 and "tap_schedule" in e.what for e in events)
    with pytest.warns(HorizonWarning, match=r"horizon \(2 s\) ends before the first scheduled event"):
        run = run_scenario(scenario, plots=False)
    assert run.notes and "1000 s" in run.notes[0]
    assert horizon_note(_short("ieee13_ofo_tapchange", 1200)) is None


def test_budget_changes_count_as_scheduled_events() -> None:
    events = scheduled_events(load_scenario("ieee13_power_budget"))
    assert any("budget" in e.what and e.t_s == 1200 for e in events)


# -- memory ----------------------------------------------------------------------------------------
def test_the_memory_estimate_grows_with_the_horizon_and_is_checked_before_the_run() -> None:
    hour = estimate_memory(build_simulation(load_scenario("ieee13_ofo_notap")))
    assert 200 * 2**20 < hour.total < 400 * 2**20
    huge = load_scenario("ieee13_ofo_notap").with_overrides(horizon_s=1e9)
    with pytest.raises(MemoryLimitError, match=r"horizon_s = 1e\+09 needs about .* TiB .* over the limit of 8 GiB"):
        run_scenario(huge, plots=False, memory_limit="8GiB")
    with pytest.raises(MemoryLimitError, match="G2GSIM_MEMORY_LIMIT=100MB"):
        os.environ["G2GSIM_MEMORY_LIMIT"] = "100MB"
        try:
            run_scenario(_short("ieee13_ofo_notap", 1), plots=False)
        finally:
            del os.environ["G2GSIM_MEMORY_LIMIT"]


def test_memory_sizes_parse_with_units() -> None:
    assert parse_bytes("8GB") == 8 * 10**9 and parse_bytes("512 MiB") == 512 * 2**20 and parse_bytes("0") == 0
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("lots")


def test_every_bundled_preset_fits_the_default_limit() -> None:
    for name in bundled_scenarios():
        scenario = load_scenario(name)
        if not scenario.is_live:
            assert estimate_memory(build_simulation(scenario)).total < 2**30, name


# -- memory over repeated runs -------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="reads /proc")
def test_repeated_runs_in_one_process_keep_memory_flat() -> None:
    import gc
    import warnings

    scenario = _short("ieee13_baseline_notap", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HorizonWarning)
        for _ in range(10):
            run_scenario(scenario, plots=False)
        gc.collect()
        before = _rss_mb()
        for _ in range(30):
            run_scenario(scenario, plots=False)
        gc.collect()
    assert _rss_mb() - before < 10, "each run left memory behind (an OpenDSS context per run leaks about 1.7 MB)"


def test_engines_reuse_the_opendss_contexts_of_engines_that_are_gone() -> None:
    import gc

    from g2gsim.grid.engine import DSSEngine

    seen = set()
    for _ in range(5):
        engine = DSSEngine()
        seen.add(id(engine.dss))
        del engine
        gc.collect()
    assert len(seen) == 1


def test_long_series_are_drawn_through_their_extremes_and_steps_through_their_changes() -> None:
    import numpy as np

    from g2gsim.plots.helpers import change_indices, extreme_indices

    rng = np.random.default_rng(0)
    y = rng.normal(size=36_000)
    y[1234] = 9.0
    y[20_000:20_010] = np.nan
    keep = extreme_indices(y)
    assert len(keep) < 5000 and 1234 in keep and keep[0] == 0 and keep[-1] == len(y) - 1
    assert np.isnan(y[keep]).any(), "a gap stays a gap"
    steps = np.repeat([128, 64, 64, 32], 9000)
    assert change_indices(steps).tolist() == [0, 9000, 27000, 35999]


def test_prepare_loads_the_sites_data_once_before_the_runs(monkeypatch) -> None:
    """Simulation.prepare loads the sites' power templates ahead of the first run (as OpenG2G
    loads its data before its run); runs then load nothing. A build alone loads nothing (the
    memory check of a scenario run comes first)."""
    import g2gsim.scenarios.build as build_module

    loaded: list[tuple[str, int]] = []
    opened = build_module.open_data_source

    def counting_source(path: object) -> object:
        source = opened(path)
        original = source.power_template

        def power_template(spec, batch, *args, **kwargs):
            loaded.append((spec.model_label, batch))
            return original(spec, batch, *args, **kwargs)

        monkeypatch.setattr(source, "power_template", power_template)
        return source

    monkeypatch.setattr(build_module, "open_data_source", counting_source)
    built = build_simulation(load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=2))
    assert loaded == []
    built.simulation.prepare()
    prepared = len(loaded)
    assert prepared >= len(built.scenario.sites[0].models)
    built.simulation.prepare()
    first = built.simulation.run()
    second = built.simulation.run()
    assert len(loaded) == prepared
    pd.testing.assert_frame_equal(first.table("grid/voltages"), second.table("grid/voltages"))
