"""Old import paths kept for one release: a module ``__getattr__`` that serves names that moved.

Every shim in the package (``g2gsim.commands``, ``g2gsim.datacenter.spec``, ...) is one call
of :func:`moved_names`, so the warning and the error for a missing name read the same
everywhere.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(
    old_module: str, moved: Mapping[str, str], renamed: Mapping[str, Any] | None = None
) -> Callable[[str], Any]:
    """A ``__getattr__`` for `old_module`: each name of `moved` (name -> its new module) is
    imported from there, each of `renamed` (old name -> the object under its new name) is
    returned, both with a DeprecationWarning naming the new path; other names are an
    AttributeError."""
    renamed = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        if name in renamed:
            new = renamed[name]
            target = f"{new.__module__}.{new.__name__}"
            value = new
        elif name in moved:
            target = f"{moved[name]}.{name}"
            value = getattr(importlib.import_module(moved[name]), name)
        else:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        verb = "is now" if name in renamed else "moved to"
        warnings.warn(
            f"{old_module}.{name} {verb} {target}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__
