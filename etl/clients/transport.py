"""The HTTP transport shared by both clients: pacing, concurrency, retries.

The transport knows nothing of either API. Each client passes a ``parse`` function that turns a raw
response into a value or raises: :class:`TransientError` (and :class:`RateLimitedError`) to retry,
anything else to fail at once. Dropped connections and timeouts are transient too.

Pacing is account-wide: one adaptive pacer and one semaphore per client, shared by every call.
After a 429 the pacer holds every slot until ``Retry-After`` has passed, so concurrent requests do
not keep hitting a quota that is already spent (the request that drew it queues for a slot
again at once, ahead of later callers), and the pace drops below the configured rate until a
quiet spell lets it probe back up (see :mod:`etl.clients.pacing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from multidict import CIMultiDictProxy

from etl.clients.config import Pacing, RetryPolicy, Timeouts
from etl.clients.errors import (
    AmbiguousWriteError,
    RateLimitedError,
    RetryBudgetExhausted,
    TransientError,
)
from etl.clients.pacing import AdaptivePacer
from etl.clients.results import TransportStats
from etl.clients.retry import backoff_delay

log = logging.getLogger("etl.clients")

T = TypeVar("T")

LARGE_BODY = 256 * 1024

JSON_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json;charset=UTF-8",
}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class HttpTransport:
    """One ``aiohttp.ClientSession`` with an account-wide rate limit, in-flight cap and retries."""

    def __init__(
        self,
        *,
        name: str,
        pacing: Pacing,
        retry: RetryPolicy,
        timeouts: Timeouts,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.pacing = pacing
        self.retry = retry
        self.timeouts = timeouts
        self.stats = TransportStats()
        self._rng = rng or random.Random()
        self._pacer = AdaptivePacer(pacing.rate or None, pacing.burst)
        self._in_flight = asyncio.Semaphore(pacing.max_in_flight)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=self.timeouts.total, sock_connect=self.timeouts.connect
            )
            connector = aiohttp.TCPConnector(limit=max(self.pacing.max_in_flight, 1) * 2)
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, headers=JSON_HEADERS, raise_for_status=False
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def pace(self) -> int:
        """Wait for the account's next request slot (after any ``Retry-After`` pause, at the
        pace); returns the pacer's generation, which a 429 for the request reports back."""
        paused = self._pacer.paused_until - time.monotonic()
        if paused > 0:
            self.stats.waited_seconds += paused
        generation = await self._pacer.acquire()
        self.stats.paced_rate = self._pacer.rate
        return generation

    async def post(
        self,
        url: str,
        body: bytes,
        parse: Callable[[RawResponse], T],
        *,
        what: str,
        paced: bool = False,
        idempotent: bool = True,
    ) -> T:
        """POST ``body`` and parse the answer, retrying transient failures within the budget.

        ``paced`` says the caller already waited in :meth:`pace` for the first attempt (the
        SalesNexus dispatcher does, so that it packs every call that queued meanwhile). A request
        that is not ``idempotent`` is retried only when it surely did not reach the CRM (a 429,
        a refused connection); any other failure raises :class:`AmbiguousWriteError`.
        """
        attempt = 0
        while True:
            attempt += 1
            if paced and attempt == 1:
                generation = self._pacer.generation  # the caller's slot was granted just now
            else:
                generation = await self.pace()
            try:
                async with self._in_flight:
                    self.stats.requests += 1
                    async with self.session.post(url, data=body) as response:
                        raw = RawResponse(response.status, response.headers, await response.read())
                if len(raw.body) > LARGE_BODY:  # decoding a big page would stall the event loop
                    return await asyncio.to_thread(parse, raw)
                return parse(raw)
            except TransientError as exc:
                error: Exception = exc
                retry_after = exc.retry_after
                if retry_after is not None:  # hold the whole account, this request included
                    self._pacer.pause(min(retry_after, self.retry.max_retry_after))
                if isinstance(exc, RateLimitedError):
                    self.stats.rate_limited += 1
                    self._pacer.rate_limited(generation)
                elif "JSON" in str(exc):
                    self.stats.invalid_json += 1
                else:
                    self.stats.server_errors += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = exc
                retry_after = None
                self.stats.connection_errors += 1
            if not idempotent and not _surely_unapplied(error):
                raise AmbiguousWriteError(
                    f"{self.name} {what}: the CRM may or may not have applied this write "
                    f"({describe(error)})"
                ) from error
            if attempt >= self.retry.max_attempts:
                raise RetryBudgetExhausted(
                    f"{self.name} {what}", attempts=attempt, last_error=describe(error)
                ) from error
            if retry_after is None:
                delay = backoff_delay(self.retry, attempt, self._rng)
            elif self._pacer.rate is not None:
                delay = 0.0  # the pacer's pause holds the retry, then the pace spaces retries out
            else:  # unpaced: a little jitter after the pause, so retries do not all leave at once
                pause = max(0.0, self._pacer.paused_until - time.monotonic())
                delay = pause + self._rng.uniform(0.0, self.retry.base_delay)
            self.stats.retries += 1
            self.stats.waited_seconds += delay
            log.debug(
                "%s %s: attempt %d failed (%s), retrying in %.2fs",
                self.name,
                what,
                attempt,
                describe(error),
                delay,
            )
            await asyncio.sleep(delay)

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.aclose()


def _surely_unapplied(error: BaseException) -> bool:
    """A 429 or a connection that was never made: the request cannot have been processed."""
    return isinstance(error, RateLimitedError | aiohttp.ClientConnectorError)


def describe(error: BaseException) -> str:
    """A one-line description of a failure that carries no request data (so no secrets)."""
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
