"""SalesManagoClient against the SALESmanago emulator over loopback HTTP."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest
from pydantic import SecretStr

from etl.clients import (
    AuthenticationError,
    Pacing,
    RetryBudgetExhausted,
    RetryPolicy,
    SalesManagoClient,
)
from etl.sandbox import FaultConfig, QuotaConfig, SalesManagoEmulator, SandboxConfig
from tests.support import sm_config, upsert_entry


async def test_130_ids_go_in_chunks_of_50_50_30_and_every_contact_comes_back() -> None:
    async with SalesManagoEmulator(SandboxConfig(contacts=200)) as sm:
        ids = sm.store.ordered_ids()[:130]
        async with SalesManagoClient(sm_config(sm)) as client:
            contacts = await client.list_by_id(ids)
        assert sorted(sm.stats.batch_sizes["contact/listById"]) == [30, 50, 50]
        assert sorted(c["id"] for c in contacts) == sorted(ids)


async def test_2500_rows_go_in_chunks_of_1000_1000_500_with_one_outcome_each() -> None:
    async with SalesManagoEmulator(SandboxConfig(contacts=10)) as sm:
        entries = [upsert_entry(n) for n in range(2500)]
        async with SalesManagoClient(sm_config(sm)) as client:
            outcomes = await client.batch_upsert(entries)
        assert sorted(sm.stats.batch_sizes["contact/batchupsert"]) == [500, 1000, 1000]
        assert [o.index for o in outcomes] == list(range(2500))
        assert all(o.status == "upserted" for o in outcomes)
        stored = sm.store.get_by_email("PERSON2499@example.org")
        assert stored is not None and outcomes[2499].id == stored["id"]
        assert len(sm.store.contacts) == 2510


async def test_rejected_rows_come_back_as_data_with_the_reason() -> None:
    async with SalesManagoEmulator(SandboxConfig(contacts=0)) as sm:
        entries = [
            upsert_entry(0),
            {"contact": {"email": "not-an-email", "name": "Bad"}},
            upsert_entry(2, company="x" * 256),
        ]
        async with SalesManagoClient(sm_config(sm)) as client:
            outcomes = await client.batch_upsert(entries)
        assert [o.status for o in outcomes] == ["upserted", "failed", "failed"]
        assert "email" in (outcomes[1].message or "").lower()
        assert "company" in (outcomes[2].message or "")
        assert len(sm.store.contacts) == 1


async def test_paging_thousands_at_a_few_requests_per_second_sees_no_429() -> None:
    quota = QuotaConfig(rate=8.0, burst=4)
    async with SalesManagoEmulator(SandboxConfig(contacts=3000, quota=quota)) as sm:
        pacing = Pacing(rate=8.0, burst=1, max_in_flight=4)
        async with SalesManagoClient(sm_config(sm, pacing=pacing)) as client:
            seen: list[str] = []
            page = 0
            while True:
                result = await client.paginated_contacts(page, 150)
                seen.extend(c["id"] for c in result.contacts)
                if not result.has_more:
                    break
                page += 1
        assert len(seen) == 3000 and set(seen) == set(sm.store.contacts)
        assert sm.stats.rate_limited == 0
        assert client.stats.rate_limited == 0


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_retry_waits_at_least_retry_after(form: str) -> None:
    quota = QuotaConfig(rate=1.0, burst=1, retry_after=form)  # type: ignore[arg-type]
    async with SalesManagoEmulator(SandboxConfig(contacts=5, quota=quota)) as sm:
        async with SalesManagoClient(sm_config(sm)) as client:  # no proactive limit: hit 429
            await client.paginated_contacts(0, 5)
            start = time.monotonic()
            page = await client.paginated_contacts(0, 5)
            waited = time.monotonic() - start
        assert len(page.contacts) == 5
        assert sm.stats.rate_limited >= 1 and client.stats.rate_limited >= 1
        assert waited >= 1.0  # Retry-After was at least one second in either form


async def test_faults_of_every_kind_lose_and_duplicate_nothing() -> None:
    faults = FaultConfig.uniform(0.10, seed=3)
    async with SalesManagoEmulator(SandboxConfig(contacts=1200, faults=faults)) as sm:
        async with SalesManagoClient(sm_config(sm)) as client:
            seen: list[str] = []
            page = 0
            while True:
                result = await client.paginated_contacts(page, 100)
                seen.extend(c["id"] for c in result.contacts)
                if not result.has_more:
                    break
                page += 1
            entries = [upsert_entry(n) for n in range(3000)]
            outcomes = await client.batch_upsert(entries)
        assert Counter(seen) == Counter(sm.store.ordered_ids()[:1200])
        assert sum(sm.stats.faults.values()) > 0 and client.stats.retries > 0
        emails = Counter(c["email"].lower() for c in sm.store.contacts.values() if c["email"])
        assert max(emails.values()) == 1  # retried writes never duplicate a contact
        for outcome in outcomes:
            email = f"person{outcome.index}@example.org"
            if outcome.ok:
                assert sm.store.get_by_email(email)["id"] == outcome.id
            else:
                assert outcome.message
        assert sum(not o.ok for o in outcomes) > 0  # per-row failures were reported as data


async def test_wrong_secret_is_a_clear_error_and_never_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with SalesManagoEmulator(SandboxConfig(contacts=5)) as sm:
        wrong = "wrong-secret-value-123"
        config = sm_config(sm, api_secret=SecretStr(wrong))
        async with SalesManagoClient(config) as client:
            with pytest.raises(AuthenticationError, match="authentication failed") as info:
                await client.paginated_contacts(0, 5)
        assert sm.stats.requests == 1
        secrets = [wrong, sm.credentials.api_key, client._sha]
        for text in (str(info.value), repr(client), repr(config), caplog.text):
            for secret in secrets:
                assert secret not in text


async def test_retry_budget_exhausted_names_the_call_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = FaultConfig(server_error=1.0)
    async with SalesManagoEmulator(SandboxConfig(contacts=5, faults=faults)) as sm:
        retry = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
        async with SalesManagoClient(sm_config(sm, retry=retry)) as client:
            with pytest.raises(RetryBudgetExhausted, match="contact/batchupsert") as info:
                await client.batch_upsert([upsert_entry(1)])
        assert sm.stats.requests == 3 and info.value.attempts == 3
        for secret in (sm.credentials.api_key, sm.credentials.api_secret, client._sha):
            assert secret not in str(info.value) and secret not in caplog.text


async def test_pace_adapts_down_when_the_real_quota_is_lower_than_configured() -> None:
    quota = QuotaConfig(rate=10.0, burst=2, retry_after="seconds")
    async with SalesManagoEmulator(SandboxConfig(contacts=4000, quota=quota)) as sm:
        pacing = Pacing(rate=30.0, burst=1, max_in_flight=4)  # three times the real quota
        async with SalesManagoClient(sm_config(sm, pacing=pacing)) as client:
            seen: list[str] = []
            for page in range(20):
                result = await client.paginated_contacts(page, 200)
                seen.extend(c["id"] for c in result.contacts)
        assert len(seen) == 4000 == len(set(seen))
        assert client.stats.paced_rate is not None and client.stats.paced_rate < 15.0
        # without adapting, about every other request would have been refused
        assert 0 < sm.stats.rate_limited <= 6
