"""The account quota: a token bucket over HTTP requests, answering 429 with ``Retry-After``."""

from __future__ import annotations

import math
import time
from email.utils import formatdate

from etl.sandbox.config import QuotaConfig


class TokenBucket:
    def __init__(self, config: QuotaConfig) -> None:
        self.config = config
        self._tokens = float(config.burst)
        self._stamp = time.monotonic()
        self._answered = 0

    def try_acquire(self) -> float | None:
        """Take one token. Returns ``None`` on success, else the seconds until one is free."""
        rate = self.config.rate
        if rate is None:
            return None
        now = time.monotonic()
        self._tokens = min(self.config.burst, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / rate

    def retry_after_header(self, wait: float) -> str:
        """Format ``wait`` as the configured form; both forms round up to whole seconds."""
        seconds = max(1, math.ceil(wait))
        form = self.config.retry_after
        if form == "mixed":
            self._answered += 1
            form = "seconds" if self._answered % 2 else "http-date"
        if form == "seconds":
            return str(seconds)
        # An HTTP-date has one-second resolution: add one so the date is never early.
        return formatdate(time.time() + seconds + 1, usegmt=True)
