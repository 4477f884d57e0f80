"""Cost of the kernel alone on the paper's schedule (issue 2, item 9).

The schedule: a datacenter every 0.1 s, a grid every 0.1 s and a controller every 1 s for
one simulated hour (36,000 + 36,000 + 3,600 = 75,600 process steps). Component bodies are
trivial: the datacenter publishes a value, the grid reads the datacenter's mailbox and
publishes, the controller reads the grid's mailbox and returns no command. What remains is
the kernel: phased SimPy events, process resumption, mailboxes, run set-up and collection.

Reported (median over repeats):
- wall s of ``Simulation.run()``, and per process step in microseconds, both in total and
  without the bodies (their cost is timed separately by calling them in a plain loop);
- SimPy events processed (read from the environment's event counter after the run, so
  counting costs nothing during it) and events per second;
- yardsticks on this machine: SimPy's bare ``yield env.timeout(1)`` loop per event, and the
  same three-process schedule written directly on SimPy timeouts (no phases, no kernel).

Target: kernel overhead < 5 us per process step. If it is missed the script prints a
cProfile summary of one run (``--profile`` prints it anyway).

Run: ``python benchmarks/bench_kernel.py [--repeats 5] [--horizon 3600] [--profile]``;
writes ``benchmarks/results/kernel.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import statistics
import time
from pathlib import Path
from typing import Any
from unittest import mock

import simpy

from g2gsim.kernel import Controller, DatacenterComponent, GridComponent, RunContext, Simulation
from g2gsim.kernel.time import step_count

RESULTS = Path(__file__).resolve().parent / "results" / "kernel.json"
TARGET_US = 5.0
DATACENTER_PERIOD, GRID_PERIOD, CONTROLLER_PERIOD = "0.1", "0.1", "1"


# -- trivial components --------------------------------------------------------------------------
class BenchDatacenter(DatacenterComponent):
    """Publishes a constant power sample."""

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")

    def step(self, tick: int) -> None:
        self.box.publish(tick, 1.0)


class BenchGrid(GridComponent):
    """Reads the datacenter's latest sample and publishes it as its 'voltage'."""

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")

    def start(self) -> None:
        self.site = self.ctx.subscribe("dc")

    def step(self, tick: int) -> None:
        self.box.publish(tick, self.site.value)


class BenchController(Controller):
    """Reads the grid's latest value and sends nothing."""

    def start(self) -> None:
        self.grid = self.ctx.subscribe("grid")

    def control(self, tick: int) -> tuple[()]:
        _ = self.grid.value
        return ()


def build(horizon_s: float) -> Simulation:
    """The paper's schedule, declared in an order unlike the phases on purpose."""
    components = [
        BenchController("ctl", CONTROLLER_PERIOD),
        BenchGrid("grid", GRID_PERIOD),
        BenchDatacenter("dc", DATACENTER_PERIOD),
    ]
    return Simulation(components, horizon_s)


class _RecordingEnvironment(simpy.Environment):
    """A plain SimPy environment that remembers the last instance, to read its counters."""

    last: _RecordingEnvironment | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _RecordingEnvironment.last = self


def process_steps(sim: Simulation) -> int:
    """Steps every periodic component takes in one run."""
    return sum(step_count(c.period, sim.horizon) for c in sim.components if c.period is not None)


# -- measurements ----------------------------------------------------------------------------
def time_kernel(sim: Simulation, repeats: int) -> tuple[list[float], int]:
    """Wall seconds of each run, and SimPy events processed in one run."""
    walls = []
    with mock.patch.object(simpy, "Environment", _RecordingEnvironment):
        for _ in range(repeats):
            start = time.perf_counter()
            sim.run()
            walls.append(time.perf_counter() - start)
    env = _RecordingEnvironment.last
    assert env is not None
    scheduled = next(env._eid)  # SimPy numbers every scheduled event from 0
    processed = scheduled - len(env._queue)
    return walls, processed


def time_bodies(sim: Simulation, repeats: int) -> float:
    """Median seconds of all component bodies of one run, called in a plain loop (no kernel)."""
    sim.run()  # leaves every component bound to a finished run's context and mailboxes
    calls = []
    for component in sim.components:
        period = sim.clock.ticks(component.period)
        calls.append((component.step, [k * period for k in range(step_count(component.period, sim.horizon))]))
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        for step, ticks in calls:
            for tick in ticks:
                step(tick)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def time_bare_timeouts(events: int, repeats: int) -> float:
    """Median seconds per event of SimPy's own ``yield env.timeout(1)`` loop."""

    def loop(env: simpy.Environment):
        for _ in range(events):
            yield env.timeout(1)

    walls = []
    for _ in range(repeats):
        env = simpy.Environment()
        env.process(loop(env))
        start = time.perf_counter()
        env.run()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls) / events


def time_bare_schedule(horizon_ticks: int, repeats: int) -> float:
    """Median seconds of the same schedule hand-written on SimPy timeouts (ticks of 0.1 s)."""

    def periodic(env: simpy.Environment, every: int, body):
        for tick in range(0, horizon_ticks, every):
            if tick > env.now:
                yield env.timeout(tick - env.now)
            body(tick)

    walls = []
    for _ in range(repeats):
        env = simpy.Environment()
        boxes: dict[str, tuple[int, float]] = {}
        # Plain SimPy orders same-time events by creation: the processes must be created in
        # phase order by hand (the kernel's phases remove exactly this constraint).
        env.process(periodic(env, 1, lambda t: boxes.__setitem__("dc", (t, 1.0))))  # noqa: B023 - used within this iteration
        env.process(periodic(env, 1, lambda t: boxes.__setitem__("grid", (t, boxes["dc"][1]))))  # noqa: B023 - used within this iteration
        env.process(periodic(env, 10, lambda t: boxes["grid"]))  # noqa: B023 - used within this iteration
        start = time.perf_counter()
        env.run(until=horizon_ticks)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def profile_run(sim: Simulation, lines: int = 15) -> str:
    """cProfile summary of one run, sorted by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    sim.run()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs; the median is reported")
    parser.add_argument("--horizon", type=float, default=3600.0, help="simulated seconds")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sim = build(args.horizon)
    steps = process_steps(sim)
    sim.run()  # warm-up: imports, first allocations
    walls, events = time_kernel(sim, args.repeats)
    wall_s = statistics.median(walls)
    bodies_s = time_bodies(sim, args.repeats)
    bare_event_s = time_bare_timeouts(steps, args.repeats)
    bare_schedule_s = time_bare_schedule(sim.clock.ticks_before(sim.horizon), args.repeats)

    per_step_us = wall_s / steps * 1e6
    kernel_us = (wall_s - bodies_s) / steps * 1e6
    row = {
        "process_steps": steps,
        "simpy_events": events,
        "wall_s": wall_s,
        "wall_s_runs": walls,
        "per_step_us": per_step_us,
        "bodies_per_step_us": bodies_s / steps * 1e6,
        "kernel_per_step_us": kernel_us,
        "events_per_s": events / wall_s,
        "bare_simpy_timeout_us_per_event": bare_event_s * 1e6,
        "bare_simpy_schedule_us_per_step": bare_schedule_s / steps * 1e6,
        "target_us": TARGET_US,
        "meets_target": kernel_us < TARGET_US,
    }

    print(
        f"kernel on the paper's schedule: dc {DATACENTER_PERIOD} s, grid {GRID_PERIOD} s, "
        f"controller {CONTROLLER_PERIOD} s, {args.horizon:g} s simulated, "
        f"median of {args.repeats} runs"
    )
    table = [
        ("process steps", f"{steps:,}"),
        ("SimPy events processed", f"{events:,}"),
        ("wall s (Simulation.run)", f"{wall_s:.3f}"),
        ("us per process step, total", f"{per_step_us:.2f}"),
        ("  of which trivial bodies", f"{row['bodies_per_step_us']:.2f}"),
        ("  kernel overhead", f"{kernel_us:.2f}  (target < {TARGET_US:g})"),
        ("events per second", f"{row['events_per_s']:,.0f}"),
        ("bare SimPy timeout, us per event", f"{bare_event_s * 1e6:.2f}"),
        ("bare SimPy same schedule, us/step", f"{row['bare_simpy_schedule_us_per_step']:.2f}"),
    ]
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"  {key:<{width}}  {value:>16}")
    print("target met" if row["meets_target"] else "TARGET MISSED: profile below")
    if args.profile or not row["meets_target"]:
        print(profile_run(sim))

    payload = {
        "benchmark": "kernel overhead per process step (trivial component bodies)",
        "schedule": {
            "datacenter_s": DATACENTER_PERIOD,
            "grid_s": GRID_PERIOD,
            "controller_s": CONTROLLER_PERIOD,
            "horizon_s": args.horizon,
        },
        "repeats": args.repeats,
        "python": platform.python_version(),
        "simpy": simpy.__version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "results": row,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
