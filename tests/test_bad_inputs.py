"""The checklist of bad inputs and faults: one row each, as a user meets them on the command line.

Every row asserts the exit code (2: bad input, 1: a run or a server failed), that the message
names the file, the field and the allowed values (or the server and the cause), that no
Python traceback reaches the user, and that nothing already written is lost or clobbered (the
scenario file, a user's file beside it and, where the row writes results, what the output
folder held). The slow rows (``kill -9`` of a run and of a sweep, live servers) run real
processes and servers; they are marked ``slow`` and still run in CI.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import tomli_w
from typer.testing import CliRunner

from g2gsim.cli import app
from g2gsim.data.bundled import BundledSyntheticSource
from g2gsim.data.caches import write_v02_cache
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.kernel.streaming import read_chunks
from g2gsim.scenarios import load_scenario

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL = "Llama-3.1-8B"
TINY_DSS = "Clear\nNew Circuit.tiny basekv=4.16 pu=1.0 phases=3 bus1=src\nNew Line.l1 bus1=src bus2=671 phases=3\n"


# -- the scenario a row breaks ---------------------------------------------------------------------
def _base() -> dict[str, Any]:
    """ieee13_ofo_notap with one model (fast to load and run), as a plain mapping."""
    raw = copy.deepcopy(load_scenario("ieee13_ofo_notap").to_dict())
    raw["sites"][0]["models"] = [{"model": MODEL, "replicas": 100}]
    raw["sites"][0]["training"] = []
    return raw


def _set(path: str, value: Any) -> Callable[[dict[str, Any], Path], None]:
    """An edit of the scenario mapping: set a dotted path (list indices as numbers)."""

    def edit(raw: dict[str, Any], folder: Path) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _tiny_cache(folder: Path) -> Path:
    return write_v02_cache(BundledSyntheticSource(), [PAPER_MODELS[MODEL]], folder / "cache")


def _v02_damaged(damage: Callable[[Path], None]) -> Callable[[dict[str, Any], Path], None]:
    def edit(raw: dict[str, Any], folder: Path) -> None:
        cache = _tiny_cache(folder)
        damage(cache / PAPER_MODELS[MODEL].cache_hash())
        raw["data"] = str(cache)

    return edit


def _cut(path: Path, n: int = 7) -> None:
    path.write_bytes(path.read_bytes()[:-n])


def _training_trace(damage: Callable[[Path], None] | None) -> Callable[[dict[str, Any], Path], None]:
    def edit(raw: dict[str, Any], folder: Path) -> None:
        trace = folder / "train.csv"
        pd.DataFrame({"t_s": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5], "power_W": [300.0] * 6}).to_csv(trace, index=False)
        if damage is not None:
            damage(trace)
        raw["sites"][0]["training"] = [{"n_gpus": 8, "t_start_s": 0.0, "t_end_s": 1.0, "trace": "train.csv"}]

    return edit


def _dss_feeder(text: str, where: str = ".") -> Callable[[dict[str, Any], Path], None]:
    def edit(raw: dict[str, Any], folder: Path) -> None:
        place = (folder / where).resolve()
        place.mkdir(parents=True, exist_ok=True)
        (place / "feeder.dss").write_text(text)
        raw["grid"] = {"feeder": str(place / "feeder.dss"), "period_s": 0.1}
        raw["controllers"] = []

    return edit


def _feeder_table_row(raw: dict[str, Any], folder: Path) -> None:
    import shutil

    from g2gsim.resources import feeders_dir

    shutil.copytree(feeders_dir() / "ieee13", folder / "myfeeder")
    lines = (folder / "myfeeder" / "lines.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("650632"))
    lines[row] = lines[row].rsplit(",", 1)[0] + ",furlongs"
    (folder / "myfeeder" / "lines.csv").write_text("\n".join(lines) + "\n")
    raw["grid"]["feeder"] = "myfeeder"


# -- rows ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One bad input: how to make it, the command, the exit code and what the message must name.

    `text` replaces the scenario file's content; `edit` changes the scenario mapping (and may
    write files beside it); ``{file}`` and ``{folder}`` in `args` and `names` are filled in.
    """

    id: str
    names: tuple[str, ...]
    code: int = 2
    edit: Callable[[dict[str, Any], Path], None] | None = None
    text: bytes | None = None
    args: tuple[str, ...] = ("run", "{file}", "--duration", "0.2", "--no-plots")
    out: Callable[[Path], Path] | None = None  # prepares an --out path that must survive unchanged
    extra: tuple[str, ...] = field(default=())


def _out_with_notes(folder: Path) -> Path:
    out = folder / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    return out


def _out_is_file(folder: Path) -> Path:
    out = folder / "results.csv"
    out.write_text("a,b\n1,2\n")
    return out


ROWS = [
    Row("malformed-toml", ("{file}", "not valid TOML", "line 2"), text=b'name = "x"\nhorizon_s = = 3\n'),
    Row("binary-scenario", ("{file}", "not a text (TOML) file"), text=bytes(range(256))),
    Row("missing-scenario", ("nowhere.toml", "bundled:"), args=("run", "nowhere.toml")),
    Row("unknown-key-top", ("{file}", "colour", "allowed", "horizon_s"), edit=_set("colour", "red")),
    Row("unknown-key-grid", ("{file}", "grid.colour", "allowed", "feeder"), edit=_set("grid.colour", 1)),
    Row("unknown-key-site", ("{file}", "sites.0.colour", "capacity_gpus"), edit=_set("sites.0.colour", 1)),
    Row(
        "unknown-key-model", ("{file}", "sites.0.models.0.colour", "replicas"), edit=_set("sites.0.models.0.colour", 1)
    ),
    Row("unknown-key-controller", ("{file}", "controllers.0.colour", "period_s"), edit=_set("controllers.0.colour", 1)),
    Row(
        "unknown-controller-param",
        ("{file}", "controllers.0.params.primal_stepsize", "primal_step_size"),
        edit=_set("controllers.0.params.primal_stepsize", 0.1),
    ),
    Row("unknown-controller-type", ("{file}", "controllers.0", "known", "ofo"), edit=_set("controllers.0.type", "pid")),
    Row(
        "wrong-type",
        ("{file}", "sites.0.capacity_gpus", "valid integer", "lots"),
        edit=_set("sites.0.capacity_gpus", "lots"),
    ),
    Row("nan-period", ("{file}", "sites.0.period_s", "finite"), edit=_set("sites.0.period_s", float("nan"))),
    Row("zero-period", ("{file}", "grid.period_s", "> 0"), edit=_set("grid.period_s", 0)),
    Row("negative-period", ("{file}", "controllers.0.period_s", "> 0"), edit=_set("controllers.0.period_s", -1.0)),
    Row("inf-horizon", ("{file}", "horizon_s", "finite"), edit=_set("horizon_s", float("inf"))),
    Row("zero-duration", ("--duration", "horizon_s", "> 0"), args=("run", "{file}", "--duration", "0")),
    Row("negative-duration", ("horizon_s", "> 0"), args=("run", "{file}", "--duration", "-5")),
    Row("negative-size", ("{file}", "sites.0.capacity_gpus", "greater than 0"), edit=_set("sites.0.capacity_gpus", -5)),
    Row(
        "zero-replicas-ok-but-negative",
        ("{file}", "sites.0.models.0.replicas", "greater than or equal to 0"),
        edit=_set("sites.0.models.0.replicas", -1),
    ),
    Row(
        "negative-delay", ("{file}", "command_link.delay_s"), edit=_set("controllers.0.command_link", {"delay_s": -0.5})
    ),
    Row(
        "nan-delay",
        ("{file}", "command_link.delay_s", "finite"),
        edit=_set("controllers.0.command_link", {"delay_s": float("nan")}),
    ),
    Row(
        "nan-param",
        ("{file}", "primal_step_size", "finite"),
        edit=_set("controllers.0.params.primal_step_size", float("nan")),
    ),
    Row("inf-limit", ("{file}", "v_max", "finite"), edit=_set("v_max", float("inf"))),
    Row("negative-seed", ("--seed -1", "0 or more"), args=("run", "{file}", "--seed", "-1")),
    Row("zero-chunk", ("--chunk-s 0", "positive"), args=("run", "{file}", "--chunk-s", "0")),
    Row("bad-set", ("--set", "PATH=VALUE"), args=("run", "{file}", "--set", "horizon_s")),
    Row("bad-memory-limit", ("--memory-limit", "not a size"), args=("run", "{file}", "--memory-limit", "lots")),
    Row(
        "horizon-too-large",
        ("{file}", "horizon_s = 1e+09", "over the limit", "--duration", "--memory-limit"),
        args=("run", "{file}", "--duration", "1e9", "--memory-limit", "16GB"),
    ),
    Row("bus-not-in-feeder", ("{file}", "sites.0.bus", "unknown bus '999'", "671"), edit=_set("sites.0.bus", "999")),
    Row("bus-single-phase", ("{file}", "sites.0.bus", "'611'", "three-phase", "671"), edit=_set("sites.0.bus", "611")),
    Row("bus-with-phases", ("{file}", "sites.0.bus", "not a bus name"), edit=_set("sites.0.bus", "671.1.2.4")),
    Row(
        "model-not-in-catalogue",
        ("{file}", "sites.0.models.0.model", "known", MODEL),
        edit=_set("sites.0.models.0.model", "Mistral-7B"),
    ),
    Row(
        "model-not-in-data",
        ("{file}", "Mistral-7B", "no bundled data", MODEL),
        code=1,
        edit=lambda raw, folder: (
            raw.setdefault("models", {}).update({"Mistral-7B": {"gpus_per_replica": 1}}),
            _set("sites.0.models.0.model", "Mistral-7B")(raw, folder),
        ),
    ),
    Row("missing-data-folder", ("{file}", "nowhere", "is not a folder"), edit=_set("data", "nowhere")),
    Row(
        "empty-data-folder",
        ("{file}", "empty", "no recognised layout"),
        edit=lambda raw, folder: ((folder / "empty").mkdir(), raw.update(data="empty")),
    ),
    Row("truncated-trace", ("trace.csv", "ends mid-line"), code=1, edit=_v02_damaged(lambda d: _cut(d / "trace.csv"))),
    Row(
        "truncated-itl-fit",
        ("itl_fit.json", "not valid JSON"),
        code=1,
        edit=_v02_damaged(lambda d: _cut(d / "itl_fit.json", 40)),
    ),
    Row(
        "missing-itl-fit",
        ("itl_fit.json", "does not exist"),
        code=1,
        edit=_v02_damaged(lambda d: (d / "itl_fit.json").unlink()),
    ),
    Row("truncated-training-trace", ("train.csv", "ends mid-line"), edit=_training_trace(_cut)),
    Row("missing-training-trace", ("train.csv", "does not exist"), edit=_training_trace(lambda p: p.unlink())),
    Row(
        "feeder-syntax-error",
        ("feeder.dss", "line: 4", "OpenDSS"),
        code=1,
        edit=_dss_feeder(TINY_DSS + "New Lin.x bus1=a\n"),
    ),
    Row(
        "feeder-outside-trusted",
        ("feeder.dss", "--feeder-dir", "a .dss file is code"),
        edit=_dss_feeder(TINY_DSS, "../elsewhere"),
    ),
    Row("feeder-table-bad-row", ("lines.csv", "line", "units", "'mi'", "furlongs"), edit=_feeder_table_row),
    Row(
        "out-holds-other-files",
        ("--out", "notes.txt", "g2gsim did not write"),
        out=_out_with_notes,
        extra=("--out", "{out}"),
    ),
    Row("out-is-a-file", ("--out", "results.csv", "is a file"), out=_out_is_file, extra=("--out", "{out}")),
    Row("out-unwritable", ("--out", "cannot create the folder"), extra=("--out", "/proc/g2gsim-results")),
    Row(
        "sweep-bad-axis",
        ("axis", "sites.0.colour", "unknown key", "capacity_gpus"),
        args=("sweep", "{folder}/s.toml", "--no-progress"),
        edit=lambda raw, folder: (folder / "s.toml").write_text(
            'name = "s"\nbase = "scenario.toml"\n[axes]\n"sites.0.colour" = [1, 2]\n'
        ),
    ),
    Row("study-zero-workers", ("--workers 0", "1 or more"), args=("ensemble", "{file}", "--workers", "0")),
    Row("study-bad-seeds", ("--seeds", "0-9"), args=("ensemble", "{file}", "--seeds", "nine")),
    Row("study-bus-not-in-feeder", ("--bus", "999", "671"), args=("site-sweep", "{file}", "--bus", "999")),
]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("G2GSIM_FEEDER_DIRS", raising=False)
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})
    return lambda *args: runner.invoke(app, list(args))


def _assert_clean(result: Any, code: int, names: list[str]) -> None:
    output = " ".join(result.output.split())
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "error:" in result.output, result.output
    for name in names:
        assert " ".join(name.split()) in output, f"the message does not name {name!r}: {result.output}"


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, cli, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "keep.txt").write_text("a user's file")
    raw = _base()
    if row.edit is not None:
        row.edit(raw, folder)
    scenario = folder / "scenario.toml"
    scenario.write_bytes(row.text if row.text is not None else tomli_w.dumps(raw).encode())
    out = row.out(tmp_path) if row.out is not None else None
    before = _digest(tmp_path)
    fill = {"file": str(scenario), "folder": str(folder), "out": str(out)}
    args = [a.format(**fill) for a in (*row.args, *row.extra)]
    _assert_clean(cli(*args), row.code, [n.format(**fill) for n in row.names])
    after = _digest(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a file written before was changed or removed"


# -- kill -9 of a run and of a sweep, then a rerun ---------------------------------------------------
def _g2gsim(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "MPLBACKEND": "Agg"}
    return subprocess.Popen(
        [sys.executable, "-m", "g2gsim.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@pytest.mark.slow
def test_kill_9_of_a_run_leaves_readable_chunks_and_a_rerun_gives_the_same_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("run", "ieee13_ofo_notap", "--duration", "900", "--chunk-s", "60", "--no-plots", "--json")
    process = _g2gsim(*args, "--out", str(out))
    try:
        _wait_for(lambda: len(list((out / "chunks").glob("*/part-00002.parquet"))) > 0)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    partial = read_chunks(out)
    assert 1200 <= len(partial["dc/state"]) < 9000 and partial["dc/state"]["time_s"].is_monotonic_increasing
    again = _g2gsim(*args, "--out", str(out))
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr.decode()
    fresh = _g2gsim(*args, "--out", str(tmp_path / "fresh"))
    fresh_out, _ = fresh.communicate(timeout=300)
    rerun, clean = json.loads(stdout.splitlines()[-1]), json.loads(fresh_out.splitlines()[-1])
    assert {k: v for k, v in rerun.items() if k != "wall_s"} == {k: v for k, v in clean.items() if k != "wall_s"}
    assert not (out / "chunks").exists()


@pytest.mark.slow
def test_kill_9_of_a_sweep_then_a_rerun_resumes_exactly(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        'name = "s"\nbase = "ieee13_ofo_notap"\n[overrides]\nhorizon_s = 60\n[axes]\nseed = [0, 1, 2, 3, 4, 5]\n'
    )
    out = tmp_path / "out"
    process = _g2gsim("sweep", str(sweep), "--workers", "2", "--out", str(out), "--no-progress", "--json")
    try:
        _wait_for(lambda: len(list((out / "runs").glob("*.json"))) >= 2 if (out / "runs").is_dir() else False)
        workers = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, "worker processes outlived the sweep"
    finally:
        process.kill()
    done = {p.stem for p in (out / "runs").glob("*.json")}
    assert 2 <= len(done) < 6
    again = _g2gsim("sweep", str(sweep), "--workers", "2", "--out", str(out), "--no-progress", "--json")
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr.decode()
    assert json.loads(stdout.splitlines()[-1])["skipped"] == len(done)
    clean = _g2gsim("sweep", str(sweep), "--out", str(tmp_path / "clean"), "--no-progress", "--json")
    clean.communicate(timeout=600)
    resumed = pd.read_parquet(out / "results.parquet").set_index("run_id").sort_index()
    straight = pd.read_parquet(tmp_path / "clean" / "results.parquet").set_index("run_id").sort_index()
    volatile = [c for c in resumed.columns if "wall" in c or c in ("worker_pid", "worker_cpu_s")]
    pd.testing.assert_frame_equal(resumed.drop(columns=volatile), straight.drop(columns=volatile))


# -- live servers ---------------------------------------------------------------------------------------
def _threads_and_sockets() -> tuple[set[threading.Thread], int]:
    return set(threading.enumerate()), len(psutil.Process().net_connections(kind="inet"))


def _assert_released(before: tuple[set[threading.Thread], int]) -> None:
    threads, sockets = before
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        if not extra and len(psutil.Process().net_connections(kind="inet")) <= sockets:
            return
        time.sleep(0.1)
    raise AssertionError(f"left behind: threads {[t.name for t in extra]}, sockets")


def _live_file(folder: Path, port: int, **live: Any) -> Path:
    raw = copy.deepcopy(load_scenario("ieee13_live_ofo").to_dict())
    raw["controllers"] = []
    server = raw["sites"][0]["live"]["servers"][0]
    server["url"] = f"http://127.0.0.1:{port}"
    raw["sites"][0]["live"].update({"request_timeout_s": 1.0, "first_reading_timeout_s": 5.0, **live})
    path = folder / "live.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_live_server_that_is_down_is_a_clear_error_without_a_hang(cli, tmp_path: Path) -> None:
    before = _threads_and_sockets()
    port = _free_port()
    start = time.monotonic()
    result = cli("run", "--live", str(_live_file(tmp_path, port)), "--duration", "3", "--no-plots")
    assert time.monotonic() - start < 30
    _assert_clean(result, 1, [MODEL, f"127.0.0.1:{port}", "not reachable"])
    _assert_released(before)


@pytest.mark.slow
def test_a_live_server_that_answers_slowly_is_a_clear_error_without_a_hang(tmp_path: Path) -> None:
    from g2gsim.live.scenario import fake_cluster_for, with_endpoints
    from g2gsim.scenarios import RunFailed, run_scenario

    before = _threads_and_sockets()
    scenario = load_scenario(_live_file(tmp_path, 1)).with_overrides(horizon_s=3)
    fakes = fake_cluster_for(scenario, tick_s=0.2).start()
    try:
        fakes.vllm[MODEL].delay_s = 3.0  # every answer comes after the 1 s request timeout
        start = time.monotonic()
        with pytest.raises(RunFailed, match=rf"(?s){MODEL}.*(timed out|Timeout|not reachable)"):
            run_scenario(with_endpoints(scenario, fakes.endpoints()), plots=False)
        assert time.monotonic() - start < 30
    finally:
        fakes.stop()
    _assert_released(before)


@pytest.mark.slow
def test_a_live_server_that_dies_mid_run_is_reported_in_the_documented_degraded_mode(tmp_path: Path) -> None:
    from g2gsim.kernel import Controller, Simulation
    from g2gsim.live.scenario import fake_cluster_for, with_endpoints
    from g2gsim.scenarios.build import build_simulation

    before = _threads_and_sockets()
    scenario = load_scenario(_live_file(tmp_path, 1, health_interval_s=0.3, buffer_s=2.0)).with_overrides(horizon_s=4)
    fakes = fake_cluster_for(scenario, tick_s=0.2).start()

    class Kill(Controller):
        def __init__(self) -> None:
            super().__init__("kill", None)

        def run(self):
            yield self.ctx.at_tick(self.ctx.clock.ticks(1))
            fakes.kill(MODEL)

        def control(self, tick: int):  # pragma: no cover - event-driven
            return ()

    try:
        built = build_simulation(with_endpoints(scenario, fakes.endpoints()))
        components = [*built.simulation.components, Kill()]
        result = Simulation(components, scenario.horizon_s, realtime_factor=1.0).run()
    finally:
        fakes.stop()
    down = result.events_of("server_down")
    assert len(down) >= 1 and down["payload"].iloc[0]["model"] == MODEL  # on_server_failure = "continue"
    assert len(result.table("dc/state")) == 40  # the run went on to the horizon
    _assert_released(before)


def test_fake_cluster_ports_in_use_are_a_one_line_error(cli, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        live = _live_file(tmp_path, port)
        before = _threads_and_sockets()
        result = cli("fake-cluster", str(live))
        _assert_clean(result, 1, ["127.0.0.1", str(port), "in use"])
    _assert_released(before)


# -- safe by default ---------------------------------------------------------------------------------
def test_servers_g2gsim_starts_bind_127_0_0_1() -> None:
    from g2gsim.live.scenario import fake_cluster_for

    fakes = fake_cluster_for(load_scenario("ieee13_live_ofo"), tick_s=0.2).start()
    try:
        hosts = {endpoint["url"].split("//")[1].rsplit(":", 1)[0] for endpoint in fakes.endpoints().values()}
        listening = {c.laddr.ip for c in psutil.Process().net_connections(kind="inet") if c.status == "LISTEN"}
    finally:
        fakes.stop()
    assert hosts == {"127.0.0.1"} and listening <= {"127.0.0.1"}


def test_nothing_read_from_a_file_is_unpickled_or_evaluated() -> None:
    """No pickle, marshal, shelve, eval or exec in the package (Parquet, JSON, TOML and CSV only)."""
    import ast

    banned_modules = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml"}
    found = []
    for path in (SRC / "g2gsim").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] in banned_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in banned_modules:
                found.append(f"{path.name}: from {node.module} import")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec"}:
                found.append(f"{path.name}: {node.func.id}()")
            elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                found.append(f"{path.name}: allow_pickle")
    assert found == []
