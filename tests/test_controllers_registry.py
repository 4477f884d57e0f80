"""The registry of component kinds: a user's controller in a scenario file (one registration
line), the errors of unknown types and taken names, plugins found through entry points (the
live site), and the deprecated keyword names of the built-in controllers."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pytest
import tomli_w

from g2gsim.controllers import ControllerSection, OFOBatchController, register_controller
from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.kernel import Command, Controller, registry
from g2gsim.kernel.registry import ComponentKind, RegistryError, UnknownKindError, kinds, lookup
from g2gsim.scenarios import ScenarioError, build_simulation, load_scenario, run_scenario


# -- a user's controller -----------------------------------------------------------------------------
class HoldSection(ControllerSection):
    """Holds every model of a site at one batch size while some voltage is below a threshold."""

    type: Literal["test_hold"] = "test_hold"
    site: str
    """The site it commands."""
    batch: int = 32
    """The batch it holds while the voltage is low."""
    v_low: float = 0.96
    """The threshold, pu."""


class Hold(Controller):
    """A user's controller: a small class, a section and one registration line."""

    def __init__(self, section: HoldSection) -> None:
        super().__init__(section.name, section.period_s, **section.links())
        self.section = section

    @classmethod
    def from_config(cls, section: HoldSection, context: Any) -> Hold:
        return cls(section)

    def start(self) -> None:
        self.voltages = self.ctx.subscribe("grid")
        self.models = sorted(self.ctx.lookup(self.section.site).specs)
        self.sent = 0

    def control(self, tick: int) -> Iterable[Command]:
        if not self.voltages.has_value or np.nanmin(self.voltages.value.voltages) >= self.section.v_low:
            return ()
        self.sent += 1
        return [SetBatchSize(batch={m: self.section.batch for m in self.models}, target=self.section.site)]

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        return {"hold": pd.DataFrame({"time_s": [self.ctx.now_s], "sent": [self.sent]})}


register_controller("test_hold", HoldSection)(Hold)


def _scenario_file(tmp_path, controllers: list[dict[str, Any]], **top: Any):
    raw = load_scenario("ieee13_baseline_notap").to_dict()
    raw.update(horizon_s=5, controllers=controllers, **top)
    path = tmp_path / "scenario.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def test_a_users_controller_runs_from_a_scenario_file(tmp_path) -> None:
    path = _scenario_file(tmp_path, [{"type": "test_hold", "name": "hold", "site": "dc", "batch": 16}])
    scenario = load_scenario(path)
    (section,) = scenario.controllers
    assert isinstance(section, HoldSection) and section.batch == 16
    assert scenario.to_dict()["controllers"][0]["batch"] == 16  # round-trips through the file format
    run = run_scenario(scenario, out=tmp_path / "out", plots=True)
    assert run.metrics["n_solves"] > 0 and run.metrics["worst_vmin"] < 0.96
    commands = run.result.commands
    assert set(commands[commands["source"] == "hold"]["kind"]) == {"SetBatchSize"}
    assert run.result.tables["hold/hold"]["sent"].iloc[0] > 0
    assert (tmp_path / "out" / "results").is_dir() and (tmp_path / "out" / "metrics.json").is_file()
    assert list((tmp_path / "out" / "plots").glob("*.png"))


def test_a_users_section_rejects_bad_keys_naming_file_and_allowed_keys(tmp_path) -> None:
    path = _scenario_file(tmp_path, [{"type": "test_hold", "name": "hold", "site": "dc", "bach": 16}])
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message and "controllers.0.bach" in message
    assert "allowed:" in message and "batch" in message and "v_low" in message


def test_unknown_type_lists_the_known_ones(tmp_path) -> None:
    path = _scenario_file(tmp_path, [{"type": "ofoo", "name": "c", "site": "dc"}])
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message and "controllers.0" in message and "'ofoo'" in message
    for known in ("'ofo'", "'rule_based'", "'power_budget'", "'test_hold'"):
        assert known in message
    with pytest.raises(UnknownKindError, match="known: .*'ofo'"):
        lookup("controller", "ofoo")


def test_registration_checks() -> None:
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(ComponentKind("controller", "ofo", HoldSection, Hold.from_config))
    with pytest.raises(TypeError, match="defaults to 'test_hold'"):
        register_controller("other_name", HoldSection)(Hold)
    with pytest.raises(TypeError, match="from_config"):
        register_controller("test_hold", HoldSection)(object)
    # re-running a definition (a notebook cell) replaces the kind
    register_controller("test_hold", HoldSection)(Hold)
    assert kinds("controller")["test_hold"].section is HoldSection


def test_section_help_lists_the_fields() -> None:
    from g2gsim.controllers import OFOConfig, OFOSection

    assert "primal_step_size (default 0.05): rho_x" in (OFOConfig.__doc__ or "")
    assert "params (default: OFOConfig())" in (OFOSection.__doc__ or "")
    assert "batch (default 32): The batch it holds" in (HoldSection.__doc__ or "")


# -- plugins -----------------------------------------------------------------------------------------
class _EntryPoint:
    def __init__(self, name: str, module: str) -> None:
        self.name, self.module = name, module

    def load(self) -> Any:
        import importlib

        return importlib.import_module(self.module)


def test_the_live_site_kind_comes_from_its_entry_point(monkeypatch) -> None:
    """Without g2gsim.live imported, the scenario builder finds the live site kind through
    the g2gsim.plugins entry points; with no such entry point, the error says what to install."""
    import g2gsim
    import g2gsim.live

    live = load_scenario("ieee13_live_ofo")
    # as if g2gsim.live had never been imported (all restored after the test)
    monkeypatch.setattr(g2gsim, "live", g2gsim.live)
    monkeypatch.delitem(sys.modules, "g2gsim.live")
    monkeypatch.delitem(registry._KINDS, ("site", "live"))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "plugin_entry_points", lambda: [])
    with pytest.raises(
        ScenarioError, match=r"site kind 'live' is provided by g2gsim.live; pip install 'g2gsim\[live\]'"
    ):
        build_simulation(live, check_only=True)

    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "plugin_entry_points", lambda: [_EntryPoint("live", "g2gsim.live")])
    built = build_simulation(live, check_only=True)
    assert type(built.sites["dc"]).__name__ == "LiveDatacenter"


def test_a_plugin_that_fails_to_import_leaves_its_kind_unknown(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "plugin_entry_points", lambda: [_EntryPoint("broken", "no_such_module_xyz")])
    with pytest.raises(UnknownKindError, match="unknown site type 'nowhere'"):
        lookup("site", "nowhere")


def test_no_scenario_module_imports_the_live_package() -> None:
    import ast
    from pathlib import Path

    import g2gsim.scenarios

    for path in Path(g2gsim.scenarios.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.startswith("g2gsim.live") for n in names), path


# -- renamed keywords --------------------------------------------------------------------------------
def test_datacenter_keyword_is_a_deprecated_name_of_site() -> None:
    with pytest.warns(DeprecationWarning, match=r"datacenter=\.\.\.\) is renamed site="):
        old = OFOBatchController("ofo", datacenter="dc", grid="grid")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = OFOBatchController("ofo", site="dc", grid="grid")
    assert old.site == new.site == "dc"
    with pytest.warns(DeprecationWarning, match="OFOBatchController.datacenter is renamed site"):
        assert new.datacenter == "dc"
    with pytest.raises(TypeError, match="give site= only"):
        OFOBatchController("ofo", site="dc", datacenter="dc", grid="grid")
    from g2gsim.controllers import LoadShiftController

    with pytest.warns(DeprecationWarning, match="renamed sites="):
        shift = LoadShiftController("shift", datacenters=["a", "b"], grid="grid")
    assert shift.sites == ("a", "b")
