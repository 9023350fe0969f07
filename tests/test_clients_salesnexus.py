"""SalesNexusClient against the SalesNexus emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections import Counter

import pytest
from pydantic import SecretStr

from etl.clients import (
    AuthenticationError,
    LimitExceededError,
    Pacing,
    SalesNexusClient,
)
from etl.sandbox import FaultConfig, QuotaConfig, SalesNexusEmulator, SandboxConfig
from tests.support import sn_config


def email_entry(store: object, n: int) -> dict[str, object]:
    email_id = store.field_id("contact", "Email")  # type: ignore[attr-defined]
    name_id = store.field_id("contact", "Full Name")  # type: ignore[attr-defined]
    return {
        "_toMatch": [email_id],
        str(email_id): f"lead{n}@example.net",
        str(name_id): f"Lead {n}",
    }


async def list_all(client: SalesNexusClient, page_size: int, total_hint: int) -> list[str]:
    """Every page requested at once, so the client packs them."""
    pages = await asyncio.gather(
        *(client.get_contacts(start, page_size) for start in range(0, total_hint, page_size))
    )
    return [i for page in pages for i in page.ids]


async def test_concurrent_calls_are_packed_25_per_request() -> None:
    async with SalesNexusEmulator(SandboxConfig(contacts=2000)) as sn:
        async with SalesNexusClient(sn_config(sn, pacing=Pacing(rate=None, max_in_flight=2))) as c:
            ids = await list_all(c, 40, 2000)
        assert Counter(ids) == Counter(sn.store.ordered_ids())
        assert sn.stats.max_calls_per_request == 25
        assert sn.stats.calls["get-contacts"] == 50
        assert sn.stats.requests <= 4  # one login + 50 calls in two or three requests


async def test_2500_imports_go_in_chunks_of_1000_1000_500() -> None:
    async with SalesNexusEmulator(SandboxConfig(contacts=0)) as sn:
        entries = [email_entry(sn.store, n) for n in range(2500)]
        async with SalesNexusClient(sn_config(sn)) as client:
            outcomes = await client.import_contacts(entries)
            again = await client.import_contacts(entries[:10])
        assert sorted(sn.stats.batch_sizes["import-contacts"]) == [10, 500, 1000, 1000]
        assert [o.status for o in outcomes] == ["created"] * 2500
        assert [o.status for o in again] == ["updated"] * 10
        assert [o.id for o in again] == [o.id for o in outcomes[:10]]
        assert len(sn.store.contacts) == 2500


async def test_a_failing_call_does_not_fail_its_neighbour() -> None:
    async with SalesNexusEmulator(SandboxConfig(contacts=30)) as sn:
        async with SalesNexusClient(sn_config(sn)) as client:
            bad = client.call(
                "get-contacts", {"filter-value": "", "start-after": "0", "page-size": "1001"}
            )
            good = client.get_contacts(0, 10)
            results = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(results[0], LimitExceededError)
        assert "1000" in str(results[0]) or "page-size" in str(results[0])
        assert len(results[1].ids) == 10  # type: ignore[union-attr]
        assert sn.stats.max_calls_per_request == 2


async def test_an_idle_client_keeps_no_page_it_delivered() -> None:
    """A long export holds only its own pages: the senders drop each answer once delivered."""
    async with SalesNexusEmulator(SandboxConfig(contacts=300)) as sn:
        async with SalesNexusClient(sn_config(sn, pacing=Pacing(rate=None, max_in_flight=4))) as c:
            pages = await asyncio.gather(*(c.get_contacts(start, 100) for start in (0, 100, 200)))
            await asyncio.sleep(0)
            records = [r for page in pages for r in page.records]
            del pages
            gc.collect()
            held = [r for r in records if [x for x in gc.get_referrers(r) if x is not records]]
        assert len(records) == 300
        assert held == []


async def test_paging_thousands_at_a_low_quota_sees_no_429() -> None:
    quota = QuotaConfig(rate=3.0, burst=2)
    async with SalesNexusEmulator(SandboxConfig(contacts=4000, quota=quota)) as sn:
        pacing = Pacing(rate=3.0, burst=1, max_in_flight=2)
        async with SalesNexusClient(sn_config(sn, pacing=pacing, calls_per_request=5)) as c:
            ids = await list_all(c, 200, 4000)
        assert Counter(ids) == Counter(sn.store.ordered_ids())
        assert sn.stats.rate_limited == 0 and c.stats.rate_limited == 0


async def test_token_expiring_mid_listing_is_renewed_once() -> None:
    async with SalesNexusEmulator(SandboxConfig(contacts=1000)) as sn:
        pacing = Pacing(rate=20.0, burst=1, max_in_flight=1)
        async with SalesNexusClient(sn_config(sn, pacing=pacing, calls_per_request=2)) as c:
            first = await c.get_contacts(0, 100)
            sn.expire_tokens()  # every token issued so far is now invalid
            rest = await list_all(c, 100, 1000)
        assert first.ids == rest[:100]
        assert Counter(rest) == Counter(sn.store.ordered_ids())
        assert sn.stats.logins == 2 and c.stats.logins == 2


async def test_faults_of_every_kind_lose_and_duplicate_nothing() -> None:
    faults = FaultConfig.uniform(0.10, seed=5)
    async with SalesNexusEmulator(SandboxConfig(contacts=1500, faults=faults)) as sn:
        async with SalesNexusClient(sn_config(sn)) as client:
            ids = await list_all(client, 100, 1500)
            entries = [email_entry(sn.store, n) for n in range(2000)]
            outcomes = await client.import_contacts(entries)
        assert Counter(ids) == Counter(sn.store.ordered_ids()[:1500])
        assert sum(sn.stats.faults.values()) > 0 and client.stats.retries > 0
        email_id = str(sn.store.field_id("contact", "Email"))
        emails = Counter(v[email_id].lower() for v in sn.store.contacts.values() if v[email_id])
        assert max(emails.values()) == 1
        for outcome in outcomes:
            if outcome.ok:
                stored = sn.store.contact_by_email(f"lead{outcome.index}@example.net")
                assert stored is not None
            else:
                assert outcome.message
        assert sum(not o.ok for o in outcomes) > 0


async def test_wrong_password_is_a_clear_error_and_never_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with SalesNexusEmulator(SandboxConfig(contacts=5)) as sn:
        wrong = "hunter2-wrong-password"
        config = sn_config(sn, password=SecretStr(wrong))
        async with SalesNexusClient(config) as client:
            with pytest.raises(AuthenticationError, match="login failed") as info:
                await client.get_contacts(0, 5)
        assert sn.stats.requests == 1
        for text in (str(info.value), repr(client), repr(config), caplog.text):
            assert wrong not in text


async def test_tokens_never_appear_in_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    faults = FaultConfig(server_error=0.3, seed=1)
    async with SalesNexusEmulator(SandboxConfig(contacts=50, faults=faults)) as sn:
        config = sn_config(sn)
        async with SalesNexusClient(config) as client:
            await client.get_contacts(0, 50)
            token = client._token
            with pytest.raises(LimitExceededError) as info:
                await client.call("import-contacts", {"contacts": json.dumps([{}] * 1001)})
        assert token and sn.stats.faults["server_error"] > 0
        for secret in (token, sn.credentials.password):
            assert secret not in caplog.text and secret not in str(info.value)
            assert secret not in repr(config) and secret not in repr(client)
