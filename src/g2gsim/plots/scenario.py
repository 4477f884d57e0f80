"""The standard set of PNG plots written after a scenario run."""

from __future__ import annotations

from pathlib import Path

from g2gsim.kernel.results import RunResult
from g2gsim.plots.feeder import plot_feeder_map
from g2gsim.plots.helpers import source_note, write_figure
from g2gsim.plots.live import is_live_state, plot_live_power
from g2gsim.plots.run import (
    plot_batch_sizes,
    plot_latency,
    plot_site_power,
    plot_site_voltages,
    plot_taps,
    plot_voltage_envelope,
)
from g2gsim.scenarios.build import BuiltScenario


def write_scenario_plots(built: BuiltScenario, result: RunResult, folder: Path) -> list[Path]:
    """Voltage envelope, site voltages, power, batch, latency (and for a live site its measured
    against augmented power), taps and the feeder map."""
    scenario = built.scenario
    grid = scenario.grid.name
    note = source_note(scenario.name, scenario.seed, built.data.description)
    written = [
        write_figure(
            plot_voltage_envelope(result, grid, scenario.v_min, scenario.v_max), folder / "voltage_envelope.png", note
        ),
        write_figure(
            plot_site_voltages(result, grid, built.site_buses, scenario.v_min, scenario.v_max),
            folder / "site_voltages.png",
            note,
        ),
    ]
    for site, deadlines in built.deadlines.items():
        written.append(write_figure(plot_site_power(result, site), folder / f"power_{site}.png", note))
        written.append(write_figure(plot_batch_sizes(result, site), folder / f"batch_{site}.png", note))
        written.append(write_figure(plot_latency(result, site, deadlines), folder / f"itl_{site}.png", note))
        if is_live_state(result.table(f"{site}/state")):
            written.append(write_figure(plot_live_power(result, site), folder / f"live_power_{site}.png", note))
    taps = plot_taps(result, grid)
    if taps is not None:
        written.append(write_figure(taps, folder / "taps.png", note))
    feeder_map = plot_feeder_map(built.grid, built.site_buses)
    if feeder_map is not None:
        written.append(write_figure(feeder_map, folder / "feeder_map.png", note))
    return written
