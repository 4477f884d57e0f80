"""Give freed memory back to the operating system between the large steps of a run.

glibc's allocator keeps freed heap pages for reuse, so after a run has built and dropped its
large temporaries (result tables, Arrow buffers, figure canvases) the process keeps their
pages resident. :func:`release_memory` asks the allocator to return them (``malloc_trim``);
elsewhere (another C library, another system) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache
from typing import Any

__all__ = ["release_memory"]


@cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory() -> None:
    """Return the allocator's free pages to the system (glibc); a no-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
