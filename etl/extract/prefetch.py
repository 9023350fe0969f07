"""Fetch pages ahead, concurrently, in a bounded window, and hand them on in order.

With page numbers or offsets known up front, the next ``window`` pages are requested at once, so
the account's quota, not our own round-trip latency, sets the pace. Pages come out in order, which
keeps the output deterministic, and nothing past the window is ever held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

P = TypeVar("P")


async def prefetch_pages(
    fetch: Callable[[int], Awaitable[P]],
    keys: Iterator[int],
    *,
    window: int,
    is_last: Callable[[P], bool],
) -> AsyncIterator[P]:
    """Yield ``fetch(key)`` for successive keys, up to ``window`` requests ahead, in key order.

    Stops after the first page for which ``is_last`` is true; requests already started beyond it
    are cancelled.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    in_flight: deque[asyncio.Task[P]] = deque()

    def top_up() -> None:
        while len(in_flight) < window:
            key = next(keys, None)
            if key is None:
                return
            in_flight.append(asyncio.ensure_future(fetch(key)))

    try:
        top_up()
        while in_flight:
            page = await in_flight.popleft()
            last = is_last(page)
            if not last:
                top_up()
            yield page
            if last:
                return
    finally:
        for task in in_flight:
            task.cancel()
        for task in in_flight:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
