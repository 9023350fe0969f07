"""cProfile across threads: the export transforms and writes in worker threads, so profiling the
event loop's thread alone would miss most of the cost."""

from __future__ import annotations

import cProfile
import pstats
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.common import print_table


class ThreadedProfile:
    """``with ThreadedProfile(path):`` profiles this thread and every thread started inside,
    then writes their merged statistics to ``path`` (a ``pstats`` file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._main = cProfile.Profile()
        self._threads: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, frame: FrameType, event: str, arg: Any) -> None:
        # Called once, on a new thread's first event; cProfile then replaces this hook.
        profile = cProfile.Profile()
        with self._lock:
            self._threads.append(profile)
        profile.enable()

    def __enter__(self) -> ThreadedProfile:
        threading.setprofile(self._start_in_thread)
        self._main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self._main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        stats = pstats.Stats(self._main)
        with self._lock:
            for profile in self._threads:
                stats.add(profile)
        stats.dump_stats(self.path)


# Where threads wait rather than work: idle executor threads, the event loop's poll, locks.
IDLE = (
    "<method 'get' of '_queue.SimpleQueue' objects>",
    "<method 'poll' of 'select.epoll' objects>",
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'select' of 'select.epoll' objects>",
)


def top_costs(path: Path, limit: int = 15) -> list[tuple[str, int, float, float]]:
    """The ``limit`` functions with the most own time, waits left out:
    (function, calls, own s, cumulative s)."""
    stats = pstats.Stats(str(path))
    entries = []
    items = stats.stats.items()  # type: ignore[attr-defined]
    for (filename, line, name), (_, calls, own, cumulative, _) in items:
        if name in IDLE:
            continue
        where = _short(filename)
        label = f"{where}:{line}({name})" if line else name
        entries.append((label, calls, own, cumulative))
    entries.sort(key=lambda entry: entry[2], reverse=True)
    return entries[:limit]


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    if "/etl/" in filename:
        return "etl/" + filename.split("/etl/", 1)[1]
    return filename


def print_profile(path: Path, limit: int = 15) -> None:
    rows = [(label, calls, own, cum) for label, calls, own, cum in top_costs(path, limit)]
    print_table(
        f"Top {limit} own-time costs (all threads, waits left out): {path.name}",
        ("function", "calls", "own s", "cumulative s"),
        rows,
    )
