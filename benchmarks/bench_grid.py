"""Cost of one grid step on each feeder, against the bare OpenDSS solve (issue 4, item 8).

For every bundled feeder, two attachments are measured: the SPEC 7 datacenter sites alone,
and the full SPEC 7 preset (sites + synthetic PV + synthetic loads). Three figures per case:

- floor: ``Solution.SolveNoControl()`` alone, repeated on the grid's own engine (the state
  does not change, so OpenDSS converges in its minimum number of iterations);
- core: what a grid step must do, write the loads through the element API + one solve + one
  ``AllBusMagPu`` read into the voltage vector (the target is within 2x of the floor);
- step: the whole component step (commands, datacenter coupling, publish, record).

Datacenter power moves like an aggregated site (slow swing plus 0.1 % noise), so the solves
in a step see realistic changes. Timings are the minimum over repeats of the mean over a
batch of steps, to resist noise from other processes.

Usage: ``python benchmarks/bench_grid.py [--steps 2000] [--repeats 5] [--feeders ieee13 ...]``
Writes ``benchmarks/results/grid.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.state import DatacenterState
from g2gsim.grid.config import (
    GeneratorAttachment,
    GridConfig,
    LoadAttachment,
    SiteAttachment,
    SyntheticLoad,
    SyntheticPV,
    from_openg2g_per_phase,
    tap_pu,
)
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel.component import Component
from g2gsim.kernel.context import RunContext, RunShared
from g2gsim.kernel.time import Clock

RESULTS = Path(__file__).resolve().parent / "results" / "grid.json"
PERIOD = Fraction(1, 10)
TARGET_RATIO = 2.0


# -- SPEC 7 attachments ------------------------------------------------------------------------
def _pv(name: str, bus: str, kw_per_phase: float, profile: int) -> GeneratorAttachment:
    """A synthetic PV given in the reference's per-phase kW (converted to g2gsim totals)."""
    return GeneratorAttachment(
        name=name, bus=bus, profile=from_openg2g_per_phase(SyntheticPV(peak_kw=kw_per_phase, profile=profile))
    )


def _load(name: str, bus: str, kw_per_phase: float, profile: int) -> LoadAttachment:
    return LoadAttachment(
        name=name, bus=bus, profile=from_openg2g_per_phase(SyntheticLoad(peak_kw=kw_per_phase, profile=profile))
    )


#: feeder -> (grid settings, site bus -> typical per-phase kW, generators, loads)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, float], list[GeneratorAttachment], list[LoadAttachment]]] = {
    "ieee13": (
        {"initial_taps": {"creg1a": tap_pu(14), "creg1b": tap_pu(6), "creg1c": tap_pu(15)}, "source_pu": 1.0},
        {"671": 1000.0},
        [_pv("pv675", "675", 10.0, 0)],
        [_load("ld680", "680", 10.0, 0)],
    ),
    "ieee34": (
        {
            "initial_taps": {
                "creg1a": tap_pu(12),
                "creg1b": tap_pu(8),
                "creg1c": tap_pu(10),
                "creg2a": tap_pu(8),
                "creg2b": tap_pu(8),
                "creg2c": tap_pu(8),
            },
            "source_pu": 1.09,
        },
        {"850": 300.0, "834": 200.0},
        [_pv("pv848", "848", 130.0, 0), _pv("pv830", "830", 65.0, 1)],
        [
            _load("ld860", "860", 80.0, 0),
            _load("ld844", "844", 120.0, 1),
            _load("ld840", "840", 60.0, 2),
            _load("ld858", "858", 50.0, 3),
            _load("ld854", "854", 40.0, 4),
        ],
    ),
    "ieee123": (
        {
            "initial_taps": {
                "creg1a": tap_pu(9),
                "creg2a": tap_pu(5),
                "creg3a": tap_pu(5),
                "creg3c": tap_pu(5),
                "creg4a": tap_pu(14),
                "creg4b": tap_pu(1),
                "creg4c": tap_pu(4),
            },
            "source_pu": 1.0,
        },
        {"8": 310.0, "23": 265.0, "60": 295.0, "105": 325.0},
        [_pv("pv1", "1", 333.3, 0), _pv("pv48", "48", 333.3, 1), _pv("pv99", "99", 333.3, 2)],
        [],
    ),
}


class TraceSite(Datacenter):
    """A datacenter replaying precomputed per-phase power (kW), so its own cost is negligible."""

    def __init__(self, name: str, power_kw: np.ndarray) -> None:
        super().__init__(name, PERIOD)
        self._power_w = power_kw * 1e3

    specs = property(lambda self: {})
    data = property(lambda self: None)
    capacity_gpus = property(lambda self: 0)
    power_factor = property(lambda self: 0.95)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._box = ctx.mailbox("state")

    def step(self, tick: int) -> None:
        empty = np.zeros(0)
        state = DatacenterState(
            self.name, self.ctx.seconds(tick), (), self._power_w[tick], empty, empty, empty, empty, np.zeros((0, 3))
        )
        self._box.publish(tick, state)


def site_power(n: int, per_phase_kw: float, seed: int) -> np.ndarray:
    """(n, 3) kW: a slow +-5 % swing per phase plus 0.1 % white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * float(PERIOD)
    swing = 1.0 + 0.05 * np.sin(2 * np.pi * t[:, None] / 90.0 + np.array([0.0, 2.1, 4.2]))
    return per_phase_kw * swing * (1.0 + 0.001 * rng.standard_normal((n, 3)))


def build(feeder: str, with_injections: bool, n_steps: int) -> tuple[OpenDSSGrid, list[Component]]:
    settings, sites, generators, loads = PRESETS[feeder]
    config = GridConfig(
        feeder=feeder,
        period_s=PERIOD,
        sites=[SiteAttachment(site=f"dc{bus}", bus=bus) for bus in sites],
        generators=generators if with_injections else [],
        loads=loads if with_injections else [],
        **settings,
    )
    grid = OpenDSSGrid("grid", config)
    datacenters: list[Component] = [
        TraceSite(f"dc{bus}", site_power(n_steps, kw, seed)) for seed, (bus, kw) in enumerate(sites.items())
    ]
    return grid, datacenters


def prepare(components: list[Component], n_steps: int) -> None:
    """Reset and start components on a bare run context (no SimPy loop: we step by hand)."""
    env = simpy.Environment()
    clock = Clock(PERIOD)
    shared = RunShared(env, clock, PERIOD * n_steps, 0, {c.name: c for c in components})
    for component in components:
        component.reset(RunContext(shared, component, 0))
    for component in components:
        component.start()


def mean_us(fn: Callable[[int], None], ticks: range) -> float:
    start = time.perf_counter_ns()
    for tick in ticks:
        fn(tick)
    return (time.perf_counter_ns() - start) / len(ticks) / 1e3


def measure(feeder: str, with_injections: bool, steps: int, repeats: int) -> dict[str, Any]:
    """Floor, core and full-step cost (us) for one feeder and attachment set."""
    total = steps * repeats * 2
    grid, datacenters = build(feeder, with_injections, total)
    prepare([grid, *datacenters], total)
    dss = grid.circuit.dss
    solve_floor = dss.Solution.SolveNoControl

    def publish(tick: int) -> None:
        for dc in datacenters:
            dc.step(tick)

    def core(tick: int) -> None:
        # the per-step work of OpenDSSGrid.step without commands, publishing and recording
        publish(tick)
        grid._write_loads(tick, tick * 0.1)
        grid._solve(tick * 0.1)
        grid._read_vector()

    def full(tick: int) -> None:
        publish(tick)
        grid.step(tick)

    publish_us, floor_us, core_us, step_us, iterations = [], [], [], [], []
    tick = 0
    for _ in range(repeats):
        batch = range(tick, tick + steps)
        publish_us.append(mean_us(publish, batch))
        core_us.append(mean_us(core, batch))
        iterations.append(dss.Solution.Iterations())
        floor_us.append(mean_us(lambda _t: solve_floor(), batch))
        tick += steps
        batch = range(tick, tick + steps)
        step_us.append(mean_us(full, batch))
        tick += steps
    dc_us = min(publish_us)
    floor = min(floor_us)
    core_net = min(core_us) - dc_us
    step_net = min(step_us) - dc_us
    return {
        "feeder": feeder,
        "attachments": "preset" if with_injections else "datacenters",
        "n_voltages": len(grid.voltage_index),
        "n_loads_written": 3 * (len(grid.config.sites) + len(grid.config.generators) + len(grid.config.loads)),
        "floor_us": round(floor, 2),
        "core_us": round(core_net, 2),
        "step_us": round(step_net, 2),
        "core_ratio": round(core_net / floor, 2),
        "step_ratio": round(step_net / floor, 2),
        "solve_in_step_us": round(grid.summary()["solve_s"] / grid.summary()["n_solves"] * 1e6, 2),
        "last_iterations": int(iterations[-1]),
        "within_target": bool(core_net <= TARGET_RATIO * floor),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per timed batch")
    parser.add_argument("--repeats", type=int, default=5, help="batches; the minimum is reported")
    parser.add_argument("--feeders", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    rows = [measure(f, inj, args.steps, args.repeats) for f in args.feeders for inj in (False, True)]
    header = f"{'feeder':8} {'attach':11} {'V':>4} {'loads':>5} {'floor':>8} {'core':>8} {'x':>5} {'step':>8} {'x':>5} {'solve*':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['feeder']:8} {r['attachments']:11} {r['n_voltages']:4d} {r['n_loads_written']:5d} "
            f"{r['floor_us']:8.1f} {r['core_us']:8.1f} {r['core_ratio']:5.2f} {r['step_us']:8.1f} "
            f"{r['step_ratio']:5.2f} {r['solve_in_step_us']:8.1f}"
        )
    print("us per grid step; x = ratio to the floor (bare SolveNoControl); solve* = mean solve inside steps")
    import opendssdirect

    payload = {
        "benchmark": "grid step vs bare OpenDSS solve",
        "target_ratio": TARGET_RATIO,
        "steps_per_batch": args.steps,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "opendssdirect": opendssdirect.__version__,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
