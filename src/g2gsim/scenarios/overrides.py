"""Dotted paths into a scenario's plain mapping: ``sites.0.models.0.replicas``, ``horizon_s``.

:meth:`Scenario.with_overrides <g2gsim.scenarios.model.Scenario.with_overrides>` and the
sweeps of :mod:`g2gsim.studies` set fields by path with these helpers; errors name the path
(or, in a sweep, the axis) and what the scenario has there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "PathError", "check_path", "set_path", "split_path", "value_at"]

#: What :func:`value_at` returns for a path the scenario does not have.
MISSING: Any = object()


class PathError(ValueError):
    """A dotted path names nothing in the scenario; the message says what is there instead."""


def split_path(path: str, noun: str = "path") -> list[str]:
    """The parts of a dotted path, or a PathError for an empty part."""
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise PathError(
            f"{noun} {path!r}: not a dotted path (e.g. 'sites.0.bus', 'controllers.0.params.primal_step_size')"
        )
    return parts


def check_path(raw: Mapping[str, Any], path: str, noun: str = "path") -> None:
    """Raise PathError unless `path` names a field of the scenario mapping `raw`.

    A missing last key is accepted: a field left unset (None is not serialised) or a new key
    of a table such as a controller's ``params``; validating the changed scenario decides.
    """
    parts = split_path(path, noun)
    node: Any = raw
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth])
        if isinstance(node, list):
            if not part.lstrip("-").isdigit():
                raise PathError(f"{noun} {path!r}: {here or '<top>'} is a list; {part!r} is not an index")
            index = int(part)
            if not -len(node) <= index < len(node):
                raise PathError(f"{noun} {path!r}: {here} has {len(node)} item(s); index {index} is out of range")
            node = node[index]
        elif isinstance(node, dict):
            if part not in node:
                if depth == len(parts) - 1:
                    return
                raise PathError(
                    f"{noun} {path!r}: no field {part!r} at {here or '<top level>'}; fields: {sorted(node)}"
                )
            node = node[part]
        else:
            where = ".".join(parts[: depth + 1])
            raise PathError(f"{noun} {path!r}: {here} is a value, it has no field {part!r} ({where})")


def set_path(raw: dict[str, Any], path: str, value: Any, noun: str = "path") -> None:
    """Set `path` in a plain scenario mapping, in place; a path that names nothing raises
    PathError saying what is there."""
    parts = split_path(path, noun)
    try:
        node: Any = raw
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        check_path(raw, path, noun)  # raises the precise message
        raise PathError(f"{noun} {path!r}: cannot be set") from None


def value_at(raw: Any, path: str) -> Any:
    """The value at a dotted path of a plain scenario mapping (:data:`MISSING` when absent)."""
    node = raw
    for part in path.split("."):
        if isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return MISSING
    return node
