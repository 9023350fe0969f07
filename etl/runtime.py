"""Process-wide settings for a long bulk run, applied once by the program that owns the process.

Live memory of a run stays small (Arrow's peaks under 50 MB), but freed memory is kept: Arrow's
default pool (mimalloc) keeps its pages (~100 MB over a long export), and glibc gives each thread
that allocates its own arena (decoding, converting and writing threads: ~80 MB more, growing with
the run). The system allocator with at most ``MALLOC_ARENAS`` arenas keeps peak RSS flat at no
measurable CPU cost. These settings belong to the whole process, so a library call never makes
them: the CLI and the benchmark worker do, at start-up, and the environment can override both
(``ARROW_DEFAULT_MEMORY_POOL``, ``MALLOC_ARENA_MAX``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os

import pyarrow as pa

M_ARENA_MAX = -8  # glibc's mallopt() parameter number
MALLOC_ARENAS = 1


def release_freed_memory() -> None:
    """Allocators that give freed memory back, unless the environment chose otherwise."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())
    if "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
            ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)
