"""Studies at scale: sweeps over scenario fields, siting, hosting capacity, seed ensembles.

Entry points::

    from g2gsim.studies import Sweep, run_sweep, load_results
    sweep = Sweep(base="ieee13_ofo_notap", overrides={"horizon_s": 60},
                  axes={"controllers.0.params.primal_step_size": [0.05, 0.1], "seed": [0, 1]})
    result = run_sweep(sweep, "out/step", workers=2)

See :mod:`g2gsim.studies.sweep`, :mod:`g2gsim.studies.studies`,
:mod:`g2gsim.studies.screening` and :mod:`g2gsim.studies.surrogate` (screened studies); the commands are in :mod:`g2gsim.cli.studies`, the figures in
:mod:`g2gsim.plots`.
"""

from g2gsim.studies.studies import (
    HostingCapacity,
    MetricError,
    candidate_buses,
    ensemble_summary,
    ensemble_sweep,
    hosting_capacity,
    parameter_sensitivity,
    seed_ensemble,
    sensitivity_sweep,
    site_sweep,
    siting_sweep,
    summarize_by,
)
from g2gsim.studies.surrogate import ScreenedSweepResult, ScreeningReport, ScreenOptions, screen_sweep
from g2gsim.studies.sweep import (
    ExecutorError,
    RangeAxis,
    RunTask,
    Sweep,
    SweepError,
    SweepFolderWarning,
    SweepResult,
    apply_parameters,
    load_results,
    run_sweep,
)

__all__ = [
    "ExecutorError",
    "HostingCapacity",
    "MetricError",
    "RangeAxis",
    "RunTask",
    "ScreenOptions",
    "ScreenedSweepResult",
    "ScreeningReport",
    "Sweep",
    "SweepError",
    "SweepFolderWarning",
    "SweepResult",
    "apply_parameters",
    "candidate_buses",
    "ensemble_summary",
    "ensemble_sweep",
    "hosting_capacity",
    "load_results",
    "parameter_sensitivity",
    "run_sweep",
    "screen_sweep",
    "seed_ensemble",
    "sensitivity_sweep",
    "site_sweep",
    "siting_sweep",
    "summarize_by",
]
