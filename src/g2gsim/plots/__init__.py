"""Headless figures (matplotlib on the Agg backend): a run's time series, the feeder map, studies.

- :mod:`~g2gsim.plots.helpers`: pyplot on Agg, :func:`write_figure`, the data-source footnote;
- :mod:`~g2gsim.plots.run`: voltages, site power, batch sizes, latency and taps of a run;
- :mod:`~g2gsim.plots.feeder`: the feeder drawn, with sites or a value per bus;
- :mod:`~g2gsim.plots.live`: a live site's measured against augmented power;
- :mod:`~g2gsim.plots.studies`: a metric over sweep axes, against a parameter, by bus;
- :func:`write_scenario_plots`: the PNG files ``run_scenario(..., plots=True)`` writes.

Every ``plot_*`` function returns a matplotlib Figure (or an Axes it drew on).
"""

from g2gsim.plots.feeder import (
    EDGE_STYLE,
    bus_positions,
    plot_bus_values,
    plot_feeder,
    plot_feeder_map,
    plot_hosting_capacity,
)
from g2gsim.plots.helpers import pyplot, source_note, write_figure
from g2gsim.plots.live import plot_live_power
from g2gsim.plots.run import (
    PHASE_LABELS,
    plot_batch_sizes,
    plot_latency,
    plot_site_power,
    plot_site_voltages,
    plot_taps,
    plot_voltage_envelope,
)
from g2gsim.plots.scenario import write_scenario_plots
from g2gsim.plots.studies import plot_metric_by_bus, plot_metric_heatmap, plot_sensitivity
from g2gsim.scenarios.runner import register_figure_writer as _register_figure_writer

__all__ = [
    "EDGE_STYLE",
    "PHASE_LABELS",
    "bus_positions",
    "plot_batch_sizes",
    "plot_bus_values",
    "plot_feeder",
    "plot_feeder_map",
    "plot_hosting_capacity",
    "plot_latency",
    "plot_live_power",
    "plot_metric_by_bus",
    "plot_metric_heatmap",
    "plot_sensitivity",
    "plot_site_power",
    "plot_site_voltages",
    "plot_taps",
    "plot_voltage_envelope",
    "pyplot",
    "source_note",
    "write_figure",
    "write_scenario_plots",
]

# run_scenario(..., plots=True) draws through this writer (the scenarios layer cannot import plots).
_register_figure_writer("plots", write_scenario_plots)
