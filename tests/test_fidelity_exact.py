"""Step-by-step equivalence with OpenG2G (``benchmarks/fidelity_exact.py``) on short horizons:
with randomness removed from both, every bus-phase voltage, every site's per-phase power and
every batch agree at every step. Runs only when ``ANCHOR_PY`` names a Python with OpenG2G
0.2.0.post1 (skips otherwise); the script itself runs the full hour on every feeder."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = os.environ.get("ANCHOR_PY")

needs_anchor = pytest.mark.skipif(not ANCHOR, reason="ANCHOR_PY (a Python with OpenG2G 0.2.0.post1) is not set")


def _script():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("fidelity_exact", ROOT / "benchmarks" / "fidelity_exact.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@needs_anchor
@pytest.mark.parametrize(
    ("case", "bound"),
    [("ieee13_baseline_notap", 1e-12), ("ieee34_baseline_tapchange", 1e-12), ("ieee34_ofo_tapchange", 1e-9)],
)
def test_g2gsim_and_openg2g_agree_step_by_step(case: str, bound: float, reference_dir, tmp_path: Path) -> None:
    exact = _script()
    data = reference_dir / "mlenergy-derived"
    r = exact.run_case(case, data, 20.0, Path(ANCHOR), tmp_path, 1e-9, 100)
    assert r["steps"] == 200 and r["bus_phases"] > 30
    assert not r["bus_phases_only_g2gsim"] and not r["bus_phases_only_openg2g"]
    assert r["max_dv_pu"] <= bound
    assert r["max_dp_w"] <= 1e-6
    assert r["batches_identical"]
    assert exact.line(r).startswith(case) and exact.line(r).split()[-1].startswith("max_dv_pu=")


def test_without_anchor_py_the_script_says_how_to_get_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANCHOR_PY"}
    process = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fidelity_exact.py")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    assert "ANCHOR_PY is not set" in process.stdout and "pip install" in process.stdout
