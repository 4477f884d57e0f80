"""The README's promises: its first two commands, and its Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_starts_with_the_two_commands() -> None:
    first = _blocks("bash")[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].startswith("pip install . && g2gsim run ieee13_ofo_notap")
    assert first[1].startswith('pip install ".[test]"')


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_examples_run(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    code = _blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec", dont_inherit=True), {"__name__": "__readme__"})


def test_readme_sweep_file_is_a_valid_sweep() -> None:
    import tomllib

    from g2gsim.studies import Sweep

    sweep_blocks = [b for b in _blocks("toml") if b.lstrip().startswith("name =")]
    assert sweep_blocks, "the README shows a sweep file"
    sweep = Sweep.model_validate(tomllib.loads(sweep_blocks[0]))
    assert sweep.base == "ieee13_ofo_tapchange" and len(sweep.axes) == 2


def test_readme_live_site_section_validates() -> None:
    import tomllib

    from g2gsim.datacenter.live_config import LiveSiteConfig

    live_blocks = [b for b in _blocks("toml") if b.lstrip().startswith("[sites.live]")]
    assert live_blocks, "the README shows a [sites.live] section"
    section = LiveSiteConfig.model_validate(tomllib.loads(live_blocks[0])["sites"]["live"])
    assert section.servers[0].model == "Llama-3.1-8B" and section.on_server_failure == "continue"


def test_readme_lists_every_bundled_scenario() -> None:
    from g2gsim.scenarios.library import bundled_scenarios

    text = README.read_text()
    missing = [name for name in bundled_scenarios() if f"`{name}`" not in text]
    assert missing == []


def test_readme_lists_every_metric_with_its_unit() -> None:
    from g2gsim.metrics import METRICS, metrics_markdown

    text = README.read_text()
    assert metrics_markdown() in text, (
        "the README's metrics table differs from g2gsim.metrics.METRICS; paste the output of "
        "python -c 'from g2gsim.metrics import metrics_markdown; print(metrics_markdown())'"
    )
    for key, info in METRICS.items():
        assert f"| `{key}` | {info.unit or '-'} |" in text


def test_readme_user_controller_loads_from_a_scenario_file(tmp_path) -> None:
    """The README's registered controller and its [[controllers]] table, read from a file."""
    import tomllib

    import tomli_w

    from g2gsim.scenarios import load_scenario, run_scenario

    (code,) = [b for b in _blocks("python") if "register_controller(" in b]
    registration = code[: code.index("\n", code.index("register_controller(")) + 1]
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(registration, "README.md registration block", "exec", dont_inherit=True), namespace)
    (table,) = [b for b in _blocks("toml") if 'type = "shed"' in b]
    raw = load_scenario("ieee13_baseline_notap").to_dict()
    raw.update(horizon_s=5, controllers=tomllib.loads(table)["controllers"])
    path = tmp_path / "shed.toml"
    path.write_text(tomli_w.dumps(raw))
    scenario = load_scenario(path)
    assert isinstance(scenario.controllers[0], namespace["ShedSection"]) and scenario.controllers[0].low == 16
    run = run_scenario(scenario, out=tmp_path / "out", plots=False)
    assert run.metrics["n_solves"] > 0 and not run.result.commands.empty
    assert (tmp_path / "out" / "results").is_dir()
