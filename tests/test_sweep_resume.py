"""Resuming sweeps: changed data runs again, failed runs retry on request, and killing a sweep
never leaves its worker processes behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from g2gsim.data.bundled import BundledSyntheticSource
from g2gsim.data.caches import write_v02_cache
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.scenarios import load_scenario
from g2gsim.studies import Sweep, run_sweep
from g2gsim.studies.executors import exit_with_parent

SRC = Path(__file__).resolve().parents[1] / "src"


def _base(data: Path | None = None) -> dict:
    scenario = load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=0.3)
    raw = scenario.to_dict()
    if data is not None:
        raw["data"] = str(data)
    return raw


def test_a_resumed_sweep_reruns_when_the_data_changed(tmp_path: Path) -> None:
    specs = [PAPER_MODELS[entry.model] for entry in load_scenario("ieee13_baseline_notap").sites[0].models]
    cache = write_v02_cache(BundledSyntheticSource(), specs, tmp_path / "cache")
    sweep = Sweep(name="data", base=_base(cache), axes={"seed": [0, 1]})
    first = run_sweep(sweep, tmp_path / "out", progress=False)
    assert first.n_ok == 2
    assert run_sweep(sweep, tmp_path / "out", progress=False).n_skipped == 2  # same data: nothing to run
    trace = cache / specs[0].cache_hash() / "trace.csv"
    lines = trace.read_text().splitlines()
    lines[1] = ",".join([*lines[1].split(",")[:2], "1.0"])
    trace.write_text("\n".join(lines) + "\n")
    again = run_sweep(sweep, tmp_path / "out", progress=False)
    assert again.n_skipped == 0 and again.n_ok == 2


def test_failed_runs_are_retried_on_request(tmp_path: Path) -> None:
    sweep = Sweep(name="retry", base=_base(), axes={"sites.0.bus": ["671", "999"]})  # no bus 999: fails at run
    first = run_sweep(sweep, tmp_path, progress=False)
    assert (first.n_ok, first.n_failed) == (1, 1)
    resumed = run_sweep(sweep, tmp_path, progress=False)
    assert (resumed.n_skipped, resumed.n_failed) == (2, 0)
    retried = run_sweep(sweep, tmp_path, progress=False, retry_failed=True)
    assert (retried.n_skipped, retried.n_failed) == (1, 1)
    assert len(retried.table) == 2  # the retried run's row replaced the old one


# -- worker processes never outlive the sweep ------------------------------------------------------
def _start_sweep(tmp_path: Path) -> subprocess.Popen:
    sweep = tmp_path / "long.toml"
    sweep.write_text(
        'name = "long"\nbase = "ieee13_ofo_notap"\n[overrides]\nhorizon_s = 3600\n[axes]\nseed = [0, 1, 2, 3]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "MPLBACKEND": "Agg"}
    command = [
        sys.executable,
        "-m",
        "g2gsim.cli",
        "sweep",
        str(sweep),
        "--workers",
        "2",
        "--out",
        str(tmp_path / "out"),
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _workers_of(process: subprocess.Popen, n: int, timeout: float = 60.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(process.pid).children(recursive=True)
        if len(children) >= n:
            return children
        time.sleep(0.2)
    raise AssertionError(f"the sweep started {len(children)} worker(s), expected {n}")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill-TERM"])
def test_killing_a_sweep_leaves_no_worker_running(tmp_path: Path, how: signal.Signals) -> None:
    process = _start_sweep(tmp_path)
    workers: list[psutil.Process] = []
    try:
        workers = _workers_of(process, 2)
        time.sleep(1.0)  # the workers are running their first runs
        process.send_signal(how)
        process.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers still running after the sweep was killed: {[p.pid for p in alive]}"
    finally:
        for leftover in [process, *workers]:
            try:
                leftover.kill()
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass


def test_a_worker_whose_parent_is_already_gone_exits_at_once() -> None:
    code = (
        f"import os, sys; sys.path.insert(0, {str(SRC)!r})\n"
        "from g2gsim.studies.executors import exit_with_parent\n"
        "exit_with_parent(os.getppid() + 10**6)\n"  # not its parent: as if the parent had died
        "print('still here')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "still here" not in result.stdout
    assert callable(exit_with_parent)
