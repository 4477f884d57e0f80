"""Small helpers shared by the end-to-end benchmarks: machine facts, tables, JSON output.

Not a benchmark itself. The scripts next to it import it as ``_benchutil`` (they are run as
``python benchmarks/<script>.py``, which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import statistics
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("g2gsim", "simpy", "numpy", "pandas", "opendssdirect.py", "dss-python")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each package ("absent" when it is not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def machine_info() -> dict[str, Any]:
    """Where and when the numbers were taken (the machine is shared: load average too)."""
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "load_average_1_5_15": list(os.getloadavg()),
        "noise_drawn_ahead": _draws_ahead(),
        "packages": package_versions(),
    }


def _draws_ahead() -> bool:
    """Whether sites draw their noise normals on a helper thread (``G2GSIM_DRAW_AHEAD``)."""
    from g2gsim.datacenter import draws_ahead

    return draws_ahead()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats are printed with 4 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], *, quick: bool) -> Path:
    """Write `payload` to ``benchmarks/results/<name>.json`` (``<name>_quick.json`` with --quick)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / (f"{name}_quick.json" if quick else f"{name}.json")
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


def last_json_line(text: str) -> dict[str, Any]:
    """The JSON object printed on the last non-empty line of a worker's stdout."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in worker output:\n{text[-2000:]}")


def ieee13_step_sweep(n_steps: int, n_seeds: int, horizon_s: float) -> Any:
    """The sweep the sweep benchmarks time: IEEE 13 OFO, `n_steps` primal step sizes x
    `n_seeds` seeds, `horizon_s` simulated seconds per run."""
    from g2gsim.studies import Sweep

    return Sweep(
        name="bench",
        base="ieee13_ofo_notap",
        overrides={"horizon_s": horizon_s},
        axes={
            "controllers.0.params.primal_step_size": [round(0.02 * (i + 1), 4) for i in range(n_steps)],
            "seed": list(range(n_seeds)),
        },
    )
