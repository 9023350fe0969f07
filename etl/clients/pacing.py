"""Account-wide pacing that adapts when the server's real quota is lower than configured.

An ``aiolimiter`` bucket paces requests at the configured rate. Each 429 that arrives while
paced cuts the rate (multiplicative decrease, once per cool-down so a burst of 429s from
requests already in flight counts once); after a quiet spell the rate probes back up towards
the configured ceiling. The configured rate is never exceeded.
"""

from __future__ import annotations

import time

from aiolimiter import AsyncLimiter

DECREASE = 0.75
INCREASE = 1.10
COOL_DOWN_S = 1.0
PROBE_AFTER_S = 5.0
FLOOR_SHARE = 0.05


class AdaptivePacer:
    def __init__(self, rate: float, burst: int) -> None:
        self.ceiling = rate
        self.burst = burst
        self.rate = rate
        self._limiter = self._limiter_for(rate)
        self._changed = time.monotonic()
        self._last_cut = float("-inf")

    def _limiter_for(self, rate: float) -> AsyncLimiter:
        return AsyncLimiter(self.burst, self.burst / rate)

    def _set(self, rate: float) -> None:
        self.rate = rate
        self._limiter = self._limiter_for(rate)
        self._changed = time.monotonic()

    async def acquire(self) -> None:
        if self.rate < self.ceiling and time.monotonic() - self._changed > PROBE_AFTER_S:
            self._set(min(self.ceiling, self.rate * INCREASE))
        await self._limiter.acquire()

    def rate_limited(self) -> None:
        """The server answered 429: its real quota is lower than our pace."""
        now = time.monotonic()
        if now - self._last_cut < COOL_DOWN_S:
            return
        self._last_cut = now
        self._set(max(self.ceiling * FLOOR_SHARE, self.rate * DECREASE))
