"""Stand-ins and a harness for testing a controller, built on the published component contracts.

A controller reads a grid's ``state`` mailbox (a :class:`~g2gsim.grid.state.GridState`) and a
site's ``state`` mailbox (a :class:`~g2gsim.datacenter.state.DatacenterState`) and sends them
commands. This package gives a test both ends without OpenDSS or traces:

- :class:`FakeSite`: publishes batch, replicas, ITL and power per model; obeys SetBatchSize and
  ShiftReplicas; keeps what it received (:class:`FakeSpec`, :func:`default_fits` describe its
  models);
- :class:`ScriptedGrid`: publishes fixed, scripted or Hypothesis-drawn voltages; applies taps;
  serves a fixed sensitivity H (``estimate_sensitivity`` and SensitivityRequest);
- :class:`Probe`: snapshots a controller after each of its steps;
- :func:`run_controller`: runs one controller against them through its real links and returns
  its commands as typed records (:class:`ControllerRun`);
- :mod:`g2gsim.testing.strategies` (needs ``hypothesis``): voltages, voltage scripts, batch
  sizes, ITL values and scripts, link specs, scripted grids.

Example (a property of the rule-based controller)::

    from hypothesis import given
    from g2gsim.controllers.rule_based import RuleBasedBatchController
    from g2gsim.testing import FakeSite, FakeSpec, ScriptedGrid, run_controller, three_phase
    from g2gsim.testing.strategies import voltage_scripts

    @given(voltage_scripts(6))
    def test_batches_stay_feasible(table):
        site = FakeSite("dc", [FakeSpec("m")], replicas={"m": 4})
        grid = ScriptedGrid("grid", three_phase(["x", "y"]), table, sites={"dc": "x"})
        run = run_controller(RuleBasedBatchController("rule", site="dc", grid="grid"), site, grid)
        assert all(b["m"] in FakeSpec("m").feasible_batch_sizes for _, b in run.batches())
"""

from g2gsim.kernel.log import LoggedCommand
from g2gsim.testing.grids import ScriptedGrid, VoltageScript, three_phase
from g2gsim.testing.harness import ControllerRun, command_rows, run_components, run_controller
from g2gsim.testing.probes import Probe
from g2gsim.testing.sites import BATCHES, FakeSite, FakeSpec, Fits, ItlScript, Scripted, StubSource, default_fits

__all__ = [
    "BATCHES",
    "ControllerRun",
    "FakeSite",
    "FakeSpec",
    "Fits",
    "ItlScript",
    "LoggedCommand",
    "Probe",
    "Scripted",
    "ScriptedGrid",
    "StubSource",
    "VoltageScript",
    "command_rows",
    "default_fits",
    "run_components",
    "run_controller",
    "three_phase",
]
