"""The layering of the package: imports only point down (or sideways where allowed).

Every ``import`` in ``src/g2gsim`` counts, module-level, lazy (inside functions) and
``TYPE_CHECKING`` alike. Layers, low to high (docs/design.md explains why):

    0 kernel, resources          3 controllers
    1 data                       4 scenarios
    2 datacenter, grid,          5 studies, live, testing, gym, plots
      metrics, planning          6 cli

Within a layer, the grid and the datacenter never import each other, and neither do studies
and live. Deprecation shims (old import paths that warn and forward for one release) are the
only exceptions, listed below by module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "g2gsim"

LAYERS = {
    "kernel": 0,
    "resources": 0,
    "data": 1,
    "datacenter": 2,
    "grid": 2,
    "metrics": 2,
    "planning": 2,
    "controllers": 3,
    "scenarios": 4,
    "studies": 5,
    "live": 5,
    "testing": 5,
    "gym": 5,
    "plots": 5,
    "cli": 6,
}
#: Sideways imports that the design forbids.
FORBIDDEN_SIDEWAYS = {("grid", "datacenter"), ("datacenter", "grid"), ("studies", "live"), ("live", "studies")}
#: Old paths kept for one release; each warns and forwards to the new place.
DEPRECATION_SHIMS = {
    "g2gsim.commands",
    "g2gsim.planning_cli",
    "g2gsim.live.cli",
    "g2gsim.datacenter.spec",
}
#: Root modules that are not part of a layer.
ROOT = {"g2gsim", "g2gsim.__init__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "g2gsim" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported g2gsim module) for every import in a file, wherever it sits."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == "g2gsim" or name.startswith("g2gsim.")]


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    unknown = sorted((packages | modules) - set(LAYERS) - {m.split(".")[-1] for m in DEPRECATION_SHIMS})
    assert not unknown, f"give these a layer in tests/test_architecture.py (and docs/design.md): {unknown}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    module = _module_name(path)
    if module in DEPRECATION_SHIMS or module in ROOT:
        return
    source = _package(module)
    assert source in LAYERS, f"{module} is in no layer"
    problems = []
    for line, target in _imports(path):
        imported = _package(target)
        if imported is None or imported == source or target in DEPRECATION_SHIMS:
            continue
        if imported not in LAYERS:
            problems.append(f"line {line}: imports {target}, which is in no layer")
        elif LAYERS[imported] > LAYERS[source]:
            problems.append(
                f"line {line}: {source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[imported]})"
            )
        elif (source, imported) in FORBIDDEN_SIDEWAYS:
            problems.append(f"line {line}: {source} must not import {imported} ({target})")
    assert not problems, f"{module}:\n  " + "\n  ".join(problems)


def test_no_private_names_cross_packages() -> None:
    """``from g2gsim.x import _name`` only inside package x itself."""
    problems = []
    for path in _modules():
        module = _module_name(path)
        source = _package(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("g2gsim."):
                if _package(node.module) == source:
                    continue
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    problems.append(f"{module}: {node.module} -> {private}")
    assert not problems, "\n".join(problems)


def test_module_and_function_sizes() -> None:
    """No module over 700 lines, no function over 80 lines (docstrings included)."""
    problems = []
    for path in _modules():
        text = path.read_text()
        lines = text.count("\n")
        if lines > 700:
            problems.append(f"{path.relative_to(SRC)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    problems.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {length} lines")
    assert not problems, "\n".join(problems)
