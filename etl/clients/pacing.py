"""Account-wide pacing: one schedule of request slots that adapts to the server's real quota.

Why not ``aiolimiter``: its bucket is fixed at construction, so changing the rate meant a new
limiter while requests already queued on the old one kept the old pace (a backlog then drew
hundreds of 429s), and with a burst of 1 every late wake-up of the event loop lost the slot for
good. A pacer needs three things a rate limiter does not offer: a rate that changes for every
waiter at once, a pause (``Retry-After``) that holds the same queue, and slots kept on a virtual
clock. Hence this small scheduler:

* **One queue.** Waiters line up on a FIFO lock; the head sleeps until the next slot, which is
  recomputed from the *current* rate and pause when it wakes, so a cut or a pause applies to
  every request still waiting. A cancelled waiter takes no slot.
* **Virtual clock.** Slot ``k + 1`` is due ``1 / rate`` after slot ``k``'s *scheduled* time, not
  after the moment the loop got round to it, so a waiter that woke late is caught up: by up to
  ``burst - 1`` slots (``burst`` is what the server's own bucket is trusted to absorb, so
  it is never overrun), and by ``CATCH_UP`` of a slot at least, which a bucket of two absorbs.
  An idle spell earns ``burst - 1`` slots, like a token bucket of that size.
* **AIMD.** A 429 cuts the rate by ``DECREASE``, once: each slot carries the generation it was
  granted in, and 429s for requests granted before the last cut are ignored (they reflect the old
  pace). After a quiet spell the rate probes back up, never above the configured ceiling: by
  ``SLOW_STEP`` every ``PROBE_SLOW_S`` while below the rate that drew the last 429 (or within
  ``NEAR`` above it), by ``FAST_STEP`` every ``PROBE_FAST_S`` beyond. Each overshoot costs a 429
  and a ``Retry-After`` pause (a second or two of the account's quota), so once a 429 comes again
  within ``NEAR`` of the same rate the real quota is taken to be there: the cut is the gentler
  ``DECREASE_AGAIN`` and the interval between probes there doubles (up to
  ``PROBE_SLOW_MAX_S``), so a steady quota is probed ever less often. Past that rate the probing
  is fast again, so a quota that grows is found quickly.
"""

from __future__ import annotations

import asyncio
import time

DECREASE = 0.75
DECREASE_AGAIN = 0.90
FAST_STEP = 1.20
SLOW_STEP = 1.05
PROBE_FAST_S = 1.0
PROBE_SLOW_S = 2.0
PROBE_SLOW_MAX_S = 16.0
NEAR = 0.10
FLOOR_SHARE = 0.05
CATCH_UP = 1.0  # of a slot: lateness a woken waiter may always catch up, whatever the burst


class AdaptivePacer:
    """Request slots at ``rate`` per second (``None``: no rate, pauses only), adapting to 429s."""

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        self.ceiling = rate
        self.rate = rate
        self.burst = max(1, burst)
        self.generation = 0  # bumped by every cut
        self.paused_until = 0.0
        self._lock = asyncio.Lock()
        self._last_slot = float("-inf")  # scheduled (virtual) time of the last slot granted
        self._changed = time.monotonic()
        self._last_bad: float | None = None  # the rate that drew the last counted 429
        self._slow_s = PROBE_SLOW_S

    async def acquire(self) -> int:
        """Wait for the account's next slot; returns the generation it was granted in."""
        async with self._lock:
            waited = False
            while True:
                now = time.monotonic()
                self._maybe_probe(now)
                due = self._due()
                if due <= now:
                    break
                waited = True
                await asyncio.sleep(due - now)
            if self.rate is not None:
                credit = max(self.burst - 1, CATCH_UP if waited else 0.0)
                self._last_slot = max(due, now - credit / self.rate)
            return self.generation

    def _due(self) -> float:
        if self.rate is None:
            return self.paused_until
        return max(self.paused_until, self._last_slot + 1.0 / self.rate)

    def _maybe_probe(self, now: float) -> None:
        if self.rate is None or self.ceiling is None or self.rate >= self.ceiling:
            return
        near = self._last_bad is not None and self.rate < self._last_bad * (1.0 + NEAR)
        quiet_since = max(self._changed, self.paused_until)  # a pause is not a quiet spell
        if now - quiet_since < (self._slow_s if near else PROBE_FAST_S):
            return
        self.rate = min(self.ceiling, self.rate * (SLOW_STEP if near else FAST_STEP))
        self._changed = now

    def pause(self, seconds: float) -> None:
        """Hold every slot until ``seconds`` from now (the server's ``Retry-After``)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def rate_limited(self, generation: int) -> bool:
        """A request granted in ``generation`` drew a 429; cut the pace unless already cut since.

        Returns whether the rate was cut.
        """
        if self.rate is None or self.ceiling is None or generation != self.generation:
            return False
        again = self._last_bad is not None and abs(self.rate / self._last_bad - 1.0) <= NEAR
        self._slow_s = min(PROBE_SLOW_MAX_S, self._slow_s * 2) if again else PROBE_SLOW_S
        self._last_bad = self.rate
        cut = DECREASE_AGAIN if again else DECREASE
        self.rate = max(self.ceiling * FLOOR_SHARE, self.rate * cut)
        self.generation += 1
        self._changed = time.monotonic()
        return True
