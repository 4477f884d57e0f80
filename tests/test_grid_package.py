"""The grid package as a user meets it: its exports, its imports, its old paths, any load site."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import g2gsim.grid
from g2gsim.grid import GridConfig, OpenDSSGrid, SiteAttachment
from g2gsim.kernel import DatacenterComponent, Simulation
from g2gsim.kernel.context import RunContext


def grid_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(g2gsim.grid.__path__, "g2gsim.grid."))


def run_fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_no_grid_module_imports_the_datacenter() -> None:
    """The grid depends on the load-site protocol only: no module of it loads g2gsim.datacenter."""
    modules = grid_modules()
    assert {"g2gsim.grid.opendss", "g2gsim.grid.linearized", "g2gsim.grid.sites"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    leaked = sorted(m for m in sys.modules if m == 'g2gsim.datacenter' or m.startswith('g2gsim.datacenter.'))\n"
        "    assert not leaked, f'{name} imports {leaked}'\n"
        "print('ok')\n"
    )
    assert run_fresh(code).strip() == "ok"


def test_importing_the_contract_loads_neither_opendss_nor_networkx() -> None:
    code = (
        "import sys\n"
        "from g2gsim.grid import Grid, GridState, SetTaps, GridConfig\n"
        "print(sorted(m for m in ('opendssdirect', 'networkx', 'g2gsim.grid.opendss') if m in sys.modules))\n"
    )
    assert run_fresh(code).strip() == "[]"


def test_every_export_resolves() -> None:
    for name in g2gsim.grid.__all__:
        assert getattr(g2gsim.grid, name) is not None, name
    assert set(g2gsim.grid.__all__) <= set(dir(g2gsim.grid))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        g2gsim.grid.Nope  # noqa: B018


def test_old_paths_keep_working() -> None:
    from g2gsim.grid import linearized, opendss, reuse
    from g2gsim.grid.circuit import Regulator
    from g2gsim.studies import screening

    assert screening.LinearizedOpenDSSGrid is linearized.LinearizedOpenDSSGrid is g2gsim.grid.LinearizedOpenDSSGrid
    assert opendss.circuit_structure_key is reuse.circuit_structure_key
    assert opendss.Regulator is Regulator


def test_every_grid_module_stays_within_700_lines() -> None:
    for name in grid_modules():
        module = importlib.import_module(name)
        assert module.__file__ is not None
        with open(module.__file__, encoding="utf-8") as handle:
            assert sum(1 for _ in handle) <= 700, name


# -- any component that meets the load-site protocol drives the grid ---------------------------
class PowerOnly:
    """A published value with nothing but the per-phase power the grid reads."""

    def __init__(self, power_w: np.ndarray) -> None:
        self.power_w = power_w


class StandInSite(DatacenterComponent):
    """A site that is no Datacenter: a power factor and per-phase power, nothing else."""

    def __init__(self, name: str, kw: float) -> None:
        super().__init__(name, Fraction(1, 10))
        self.kw = kw
        self.power_factor = 0.9

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._box = ctx.mailbox("state")

    def step(self, tick: int) -> None:
        self._box.publish(tick, PowerOnly(np.full(3, self.kw * 1e3)))


def test_a_stand_in_site_drives_the_grid() -> None:
    def run(kw: float) -> tuple[np.ndarray, np.ndarray]:
        grid = OpenDSSGrid("grid", GridConfig(feeder="ieee13", sites=(SiteAttachment(site="dc", bus="671"),)))
        result = Simulation([StandInSite("dc", kw), grid], horizon_s=0.3).run()
        power = result.table("grid/site_power")[["kw_a", "kw_b", "kw_c"]].to_numpy()
        return power, result.table("grid/voltages")[["671.1", "671.2", "671.3"]].to_numpy()

    light_kw, light_v = run(100.0)
    heavy_kw, heavy_v = run(900.0)
    assert (light_kw == 100.0).all() and (heavy_kw == 900.0).all()
    assert (heavy_v < light_v).all()  # more load, lower voltage


def test_a_site_without_a_power_factor_is_named() -> None:
    class NoPowerFactor(StandInSite):
        power_factor = property(lambda self: (_ for _ in ()).throw(AttributeError("power_factor")))  # type: ignore[assignment]

        def __init__(self, name: str, kw: float) -> None:
            DatacenterComponent.__init__(self, name, Fraction(1, 10))
            self.kw = kw

    grid = OpenDSSGrid("grid", GridConfig(feeder="ieee13", sites=(SiteAttachment(site="dc", bus="671"),)))
    with pytest.raises(Exception, match=r"site 'dc' is a NoPowerFactor without a power_factor"):
        Simulation([NoPowerFactor("dc", 1.0), grid], horizon_s=0.2).run()
    fixed = OpenDSSGrid(
        "grid", GridConfig(feeder="ieee13", sites=(SiteAttachment(site="dc", bus="671", power_factor=1.0),))
    )
    Simulation([NoPowerFactor("dc", 1.0), fixed], horizon_s=0.2).run()  # the attachment's own factor is enough
