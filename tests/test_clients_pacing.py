"""Account-wide pacing against the emulators' quota over loopback HTTP: few 429s, no lost calls.

The emulator's token bucket is the account's real quota; the client's ``Pacing.rate`` is what
the user configured. Counts are asserted (429s, calls answered, records seen), never timings.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from etl.clients import Pacing, RetryPolicy, SalesManagoClient, SalesNexusClient
from etl.sandbox import QuotaConfig, SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from etl.sandbox.quota import TokenBucket
from tests.support import sm_config, sn_config

# The sandbox's Retry-After (a whole second) is capped at half of one, which its bucket refills
# in, so that the tests stay short; the budget covers a few 429s a call.
RETRY = RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.2, max_retry_after=0.5)
PAGE = 10


async def all_pages(client: SalesManagoClient, pages: int) -> list[str]:
    """Every page at once: a backlog of concurrent calls queued on the account's pacer."""
    results = await asyncio.gather(*(client.paginated_contacts(p, PAGE) for p in range(pages)))
    return [c["id"] for result in results for c in result.contacts]


async def test_a_backlog_against_a_lower_real_quota_draws_a_few_429s_and_loses_no_call() -> None:
    quota = QuotaConfig(rate=40.0, burst=3, retry_after="seconds")
    async with SalesManagoEmulator(SandboxConfig(contacts=1500, quota=quota)) as sm:
        pacing = Pacing(rate=160.0, burst=1, max_in_flight=8)  # four times the real quota
        async with SalesManagoClient(sm_config(sm, pacing=pacing, retry=RETRY)) as client:
            seen = await all_pages(client, 150)
        assert Counter(seen) == Counter(sm.store.ordered_ids())  # every call answered, once
        assert sm.stats.calls["contact/paginatedContactList"] == 150  # none twice
        # Four times the quota takes about five cuts of the pace; each counts one 429, and the
        # 429s of requests sent before it at the old pace do not cut again. A pacer that did not
        # adapt would see about three of every four requests refused.
        assert 0 < sm.stats.rate_limited <= 15
        assert client.stats.paced_rate is not None and client.stats.paced_rate < 50.0


async def test_the_pace_probes_back_up_once_the_quota_allows_it() -> None:
    low = QuotaConfig(rate=30.0, burst=3, retry_after="seconds")
    async with SalesManagoEmulator(SandboxConfig(contacts=1000, quota=low)) as sm:
        pacing = Pacing(rate=90.0, burst=1, max_in_flight=8)
        async with SalesManagoClient(sm_config(sm, pacing=pacing, retry=RETRY)) as client:
            assert len(await all_pages(client, 60)) == 600
            cut_to = client.stats.paced_rate
            refused = sm.stats.rate_limited
            assert cut_to is not None and cut_to < 45.0 and refused > 0

            sm.bucket = TokenBucket(QuotaConfig(rate=90.0, burst=5))  # the account's quota grows
            seen = await all_pages(client, 100)
            recovered = client.stats.paced_rate

        assert Counter(seen) == Counter(sm.store.ordered_ids())
        assert recovered is not None and cut_to < recovered <= 90.0
        assert sm.stats.rate_limited == refused  # probing up drew no 429 under the new quota


async def test_a_pace_equal_to_the_quota_draws_no_429() -> None:
    quota = QuotaConfig(rate=30.0, burst=5, retry_after="seconds")  # the sandbox's burst
    async with SalesManagoEmulator(SandboxConfig(contacts=1000, quota=quota)) as sm:
        pacing = Pacing(rate=30.0, burst=1, max_in_flight=8)
        async with SalesManagoClient(sm_config(sm, pacing=pacing, retry=RETRY)) as client:
            seen = await all_pages(client, 100)
        assert Counter(seen) == Counter(sm.store.ordered_ids())
        assert sm.stats.rate_limited == 0 and client.stats.rate_limited == 0
        assert sm.stats.requests == 100


async def test_salesnexus_packed_calls_at_the_quota_draw_no_429() -> None:
    quota = QuotaConfig(rate=30.0, burst=5, retry_after="seconds")
    async with SalesNexusEmulator(SandboxConfig(contacts=1500, quota=quota)) as sn:
        pacing = Pacing(rate=30.0, burst=1, max_in_flight=4)
        config = sn_config(sn, pacing=pacing, retry=RETRY, calls_per_request=2)
        async with SalesNexusClient(config) as client:
            pages = await asyncio.gather(*(client.get_contacts(n * PAGE, PAGE) for n in range(150)))
        assert Counter(i for page in pages for i in page.ids) == Counter(sn.store.contacts.keys())
        assert sn.stats.rate_limited == 0 and client.stats.rate_limited == 0
