"""The SalesNexus emulator over real loopback HTTP: batching, sessions, limits, upserts, quota."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from etl.cli.sandbox_cmd import build_config, sandbox
from etl.sandbox import FaultConfig, QuotaConfig, SalesNexusEmulator, SandboxConfig
from etl.sandbox.salesnexus_store import SalesNexusStore

EMAIL = "demo@sandbox.example"
PASSWORD = "sandbox-password"
PERMANENT = "sandbox-permanent-token"
SMALL = SandboxConfig(seed=7, contacts=50, activities=80, sales=30)


def call(function: str, request_id: str | None = None, **params: Any) -> dict[str, Any]:
    """One call; keyword parameters use ``_`` for ``-`` (``page_size`` -> ``page-size``)."""
    body: dict[str, Any] = {"function": function, "request-id": request_id or function}
    if params:
        body["parameters"] = {k.replace("_", "-"): v for k, v in params.items()}
    return body


class Client:
    def __init__(self, emulator: SalesNexusEmulator, session: aiohttp.ClientSession) -> None:
        self.emulator = emulator
        self.session = session

    async def post(self, calls: Any) -> tuple[int, Any]:
        async with self.session.post(self.emulator.base_url, json=calls) as response:
            return response.status, await response.json()

    async def batch(self, *calls: dict[str, Any]) -> list[dict[str, Any]]:
        status, body = await self.post(list(calls))
        assert status == 200
        return body

    async def one(self, function: str, **params: Any) -> dict[str, Any]:
        (element,) = await self.batch(call(function, **params))
        return element

    async def login(self) -> str:
        element = await self.one("get-login-token", email_address=EMAIL, password=PASSWORD)
        return element["result"]["login-token"]


async def _client(config: SandboxConfig) -> AsyncIterator[Client]:
    async with SalesNexusEmulator(config) as emulator, aiohttp.ClientSession() as session:
        yield Client(emulator, session)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async for c in _client(SMALL):
        yield c


# -- seeding ------------------------------------------------------------------------------------
def test_seeding_is_deterministic_and_sized() -> None:
    a, b = SalesNexusStore(SMALL), SalesNexusStore(SMALL)
    assert (len(a.contacts), len(a.activities), len(a.sales)) == (50, 80, 30)
    assert a.contacts == b.contacts
    assert a.activities == b.activities
    assert a.sales == b.sales
    assert a.notes == b.notes
    assert list(a.contacts)[:3] == ["101", "102", "103"]
    other = SalesNexusStore(SandboxConfig(seed=8, contacts=50, activities=80, sales=30))
    assert other.contacts != a.contacts

    contact_fields = {str(f.id) for f in a.fields if f.table == "contact"}
    assert all(set(values) == contact_fields for values in a.contacts.values())
    assert all(isinstance(v, str) for c in a.contacts.values() for v in c.values())
    assert all(act["schedule-with"] in a.contacts for act in a.activities.values())
    assert {act["type"] for act in a.activities.values()} == {"call", "meeting", "todo"}
    contact_key = str(a.field_id("sales", "Contact ID"))
    status_key = str(a.field_id("sales", "Status"))
    amount_key = str(a.field_id("sales", "Amount"))
    assert all(s[contact_key] in a.contacts for s in a.sales.values())
    assert {s[status_key] for s in a.sales.values()} == {"0", "1", "2"}
    amounts = [s[amount_key] for s in a.sales.values() if s[amount_key]]
    assert all(len(x.split(".")[1]) == 2 for x in amounts)
    for name in ("Lead Source", "Customer Tier", "Newsletter Opt-In", "Annual Revenue"):
        key = str(a.field_id("contact", name))
        assert sum(1 for c in a.contacts.values() if c[key]) >= 15, name
    line_key = str(a.field_id("sales", "Product Line"))
    assert sum(1 for s in a.sales.values() if s[line_key]) >= 10
    # The odd ones: a 255-character company and a mixed-case e-mail.
    assert len(a.contacts["103"][str(a.field_id("contact", "Company"))]) == 255
    found = a.contact_by_email("mixed.case+newsletter@example.com")
    assert found is not None and found[0] == "105"


def test_store_python_api() -> None:
    store = SalesNexusStore(SMALL)
    email, company = store.field_id("contact", "Email"), store.field_id("contact", "Company")
    modified = str(store.field_id("contact", "Modified"))
    new_id = store.add_contact({email: "Nowy@Example.PL", company: "Żabka"})
    assert new_id == "151"
    assert list(store.contacts)[-1] == "151"
    assert store.contact_by_email("nowy@example.pl") == (new_id, store.contacts[new_id])
    before = store.contacts["101"][modified]
    store.modify_contact("101", {company: "Renamed"})
    assert store.contacts["101"][str(company)] == "Renamed"
    assert store.contacts["101"][modified] > before
    store.delete_contact(new_id)
    assert new_id in store.deleted and new_id not in store.contacts
    assert store.contact_by_email("nowy@example.pl") is None


async def test_field_id_offset_shifts_the_catalog() -> None:
    config = SandboxConfig(seed=7, contacts=5, activities=0, sales=0, field_id_offset=1000)
    async for c in _client(config):
        token = await c.login()
        fields = (await c.one("get-all-fields", login_token=token))["result"]
        by_name = {(f["table"], f["name"]): f["id"] for f in fields}
        assert by_name[("contact", "Email")] == 1133
        assert by_name[("contact", "Company")] == 1047
        assert by_name[("sales", "Contact ID")] == 1220
        assert len(fields) == 34
        page = await c.one("get-contacts", login_token=token, start_after="0", page_size="5")
        assert all(
            "1133" in contact and "133" not in contact for contact in page["result"]["contacts"]
        )
        assert c.emulator.store.field_id("note", "Type") == 1402


# -- sessions -----------------------------------------------------------------------------------
async def test_login_token_expires() -> None:
    config = SandboxConfig(seed=7, contacts=5, activities=0, sales=0, token_ttl=0.5)
    async for c in _client(config):
        login = await c.one("get-login-token", email_address=EMAIL, password=PASSWORD)
        assert login["result"]["expires-in"] == 0.5
        token = login["result"]["login-token"]
        ok = await c.one("get-users", login_token=token)
        assert [u["user-id"] for u in ok["result"]] == ["1", "2", "3", "4"]
        await asyncio.sleep(0.6)
        expired, permanent = await c.batch(
            call("get-users", login_token=token), call("get-users", login_token=PERMANENT)
        )
        assert expired["error"]["code"] == "invalid-login-token"
        assert "result" not in expired
        assert len(permanent["result"]) == 4
        assert c.emulator.stats.logins == 1


async def test_wrong_password_and_missing_token(client: Client) -> None:
    wrong, missing, unknown = await client.batch(
        call("get-login-token", email_address=EMAIL, password="nope"),
        call("get-contacts", page_size="5"),
        call("get-contacts", login_token="not-a-token", page_size="5"),
    )
    assert wrong == {
        "request-id": "get-login-token",
        "function": "get-login-token",
        "error": {"code": "invalid-parameter", "message": "Invalid email address or password"},
    }
    assert missing["error"]["code"] == "invalid-login-token"
    assert unknown["error"]["code"] == "invalid-login-token"
    assert client.emulator.stats.logins == 0


# -- batching and limits ------------------------------------------------------------------------
async def test_at_most_25_calls_per_request(client: Client) -> None:
    calls = [call("echo", f"r{i}", data=f"é{i}") for i in range(26)]
    status, body = await client.post(calls)
    assert status == 413
    assert body["error"]["code"] == "limit-exceeded"
    assert "25" in body["error"]["message"]
    assert client.emulator.stats.calls["echo"] == 0

    status, body = await client.post(calls[:25])
    assert status == 200
    assert [e["request-id"] for e in body] == [f"r{i}" for i in range(25)]
    assert [e["result"] for e in body] == [f"é{i}" for i in range(25)]

    status, body = await client.post({"function": "greet"})
    assert status == 400


async def test_page_size_over_limit_fails_only_that_call(client: Client) -> None:
    token = await client.login()
    too_big, fine, not_string, zero = await client.batch(
        call("get-contacts", "a", login_token=token, start_after="0", page_size="1001"),
        call("get-contacts", "b", login_token=token, start_after="0", page_size="10"),
        call("get-sales", "c", login_token=token, start_after="0", page_size=10),
        call("get-activities", "d", login_token=token, start_after="0", page_size="0"),
    )
    assert too_big["error"]["code"] == "limit-exceeded"
    assert "1000" in too_big["error"]["message"]
    assert fine["result"]["contact-ids"] == [str(i) for i in range(101, 111)]
    assert len(fine["result"]["contacts"]) == 10
    assert not_string["error"]["code"] == "invalid-parameter"
    assert zero["error"]["code"] == "limit-exceeded"


async def test_import_over_1000_entries_is_refused(client: Client) -> None:
    token = await client.login()
    email = str(client.emulator.store.field_id("contact", "Email"))
    entries = [{"_toMatch": [int(email)], email: f"bulk{i}@example.com"} for i in range(1001)]
    over, as_list = await client.batch(
        call(
            "import-contacts",
            login_token=token,
            contacts=json.dumps(entries),
            create_if_not_updated="true",
        ),
        call("import-contacts", login_token=token, contacts=entries[:2]),
    )
    assert over["error"]["code"] == "limit-exceeded"
    assert "1000" in over["error"]["message"]
    assert as_list["error"]["code"] == "invalid-parameter"
    assert len(client.emulator.store.contacts) == 50
    assert client.emulator.stats.largest_batch == 1001


async def test_import_upsert_semantics(client: Client) -> None:
    token = await client.login()
    store = client.emulator.store
    email = str(store.field_id("contact", "Email"))
    phone = str(store.field_id("contact", "Phone"))
    company = str(store.field_id("contact", "Company"))

    async def run(entries: list[dict[str, Any]], **flags: str) -> list[dict[str, Any]]:
        element = await client.one(
            "import-contacts", login_token=token, contacts=json.dumps(entries), **flags
        )
        return element["result"]

    first = await run(
        [
            {"_toMatch": [int(email)], email: "Ola@Example.com", company: "Zażółć Sp. z o.o."},
            {"_toMatch": [int(email)], email: "OLA@example.COM", phone: "+48 600 100 200"},
        ],
        create_if_not_updated="true",
        match_nulls="false",
    )
    assert [r["status"] for r in first] == ["created", "updated"]
    assert [r["index"] for r in first] == [0, 1]
    created_id = first[0]["contact-id"]
    assert first[1]["contact-id"] == created_id == "151"
    record = store.contacts[created_id]
    assert (record[company], record[phone]) == ("Zażółć Sp. z o.o.", "+48 600 100 200")
    assert record[str(store.field_id("contact", "Record Manager"))] == EMAIL

    second = await run(
        [
            # match-nulls false: an empty value never matches, so nothing is updated or created
            {"_toMatch": [int(email)], email: "", company: "Ghost"},
            # a field over 255 characters
            {"_toMatch": [int(email)], email: "long@example.com", company: "x" * 256},
            {"_toMatch": [int(email)], email: "not-an-email"},
            {"_toMatch": [int(email)], email: "a@example.com", "99999": "?"},
            # no match and create-if-not-updated false: skipped
            {"_toMatch": [int(email)], email: "nobody@example.com"},
        ],
        create_if_not_updated="false",
        match_nulls="false",
    )
    assert [r["status"] for r in second] == ["skipped", "error", "error", "error", "skipped"]
    assert [r["contact-id"] for r in second] == [None] * 5
    assert "Company" in second[1]["message"] and "255" in second[1]["message"]
    assert "Email" in second[2]["message"]
    assert "99999" in second[3]["message"]
    assert len(store.contacts) == 51

    # match-nulls true (the reference's default): the empty phone counts as a match
    third = await run(
        [{"_toMatch": [int(email), int(phone)], email: "ola@example.com", phone: "", company: "Q"}]
    )
    assert third == [{"index": 0, "status": "updated", "contact-id": "151", "message": ""}]
    fourth = await run(
        [{"_toMatch": [int(email), int(phone)], email: "ola@example.com", phone: ""}],
        match_nulls="false",
    )
    assert fourth[0]["status"] == "skipped"
    assert client.emulator.stats.batch_sizes["import-contacts"] == [2, 5, 1, 1]


async def test_row_failures_and_call_errors_are_injected() -> None:
    faults = FaultConfig(row_failure=1.0, call_error=0.0)
    config = SandboxConfig(seed=7, contacts=5, activities=0, sales=0, faults=faults)
    async for c in _client(config):
        email = str(c.emulator.store.field_id("contact", "Email"))
        entries = [{email: f"r{i}@example.com"} for i in range(3)]
        element = await c.one(
            "import-contacts",
            login_token=PERMANENT,
            contacts=json.dumps(entries),
            create_if_not_updated="true",
        )
        assert [r["message"] for r in element["result"]] == [
            "Internal error while importing the contact"
        ] * 3
        assert {r["status"] for r in element["result"]} == {"error"}
        assert c.emulator.stats.faults["row_failure"] == 3
        assert len(c.emulator.store.contacts) == 5

    config = SandboxConfig(seed=7, contacts=5, faults=FaultConfig(call_error=1.0))
    async for c in _client(config):
        body = await c.batch(call("greet", "a"), call("echo", "b", data="x"))
        assert [e["error"]["code"] for e in body] == ["internal-error", "internal-error"]
        assert c.emulator.stats.faults["call_error"] == 2


# -- paged reads --------------------------------------------------------------------------------
async def test_paging_covers_every_contact_once(client: Client) -> None:
    token = await client.login()
    seen: list[str] = []
    start = 0
    while True:
        calls = [
            call("get-contacts", f"p{start + 7 * i}", login_token=token,
                 filter_value="", start_after=str(start + 7 * i), page_size="7")
            for i in range(3)
        ]  # fmt: skip
        pages = [e["result"] for e in await client.batch(*calls)]
        for page in pages:
            assert len(page["contact-ids"]) == len(page["contacts"])
            seen.extend(page["contact-ids"])
        start += 21
        if not pages[-1]["contact-ids"]:
            break
    assert seen == list(client.emulator.store.contacts)
    assert len(seen) == len(set(seen)) == 50

    activities: list[str] = []
    while True:
        page = await client.one(
            "get-activities", login_token=token, start_after=str(len(activities)), page_size="30"
        )
        if not page["result"]["activity-ids"]:
            break
        activities.extend(page["result"]["activity-ids"])
    assert activities == list(client.emulator.store.activities)


async def test_filter_value_searches_name_company_email(client: Client) -> None:
    store = client.emulator.store
    email = str(store.field_id("contact", "Email"))
    new_id = store.add_contact({email: "Unique.Needle@example.com"})
    page = await client.one(
        "get-contacts", login_token=PERMANENT, filter_value="unique.NEEDLE", page_size="50"
    )
    assert page["result"]["contact-ids"] == [new_id]
    sales = await client.one(
        "get-sales", login_token=PERMANENT, filter_value="zzz-no-such", page_size="50"
    )
    assert sales["result"] == {"sales-ids": [], "sales": []}


# -- writes -------------------------------------------------------------------------------------
async def test_write_functions(client: Client) -> None:
    store = client.emulator.store
    email = str(store.field_id("contact", "Email"))
    name = str(store.field_id("contact", "Full Name"))
    sales_fields = {n: str(store.field_id("sales", n)) for n in ("Contact ID", "Status", "Amount")}
    t = PERMANENT
    data = {name: "Åsa Öberg", email: "asa@example.se"}
    (created,) = await client.batch(call("create-contact", login_token=t, contact_field_data=data))
    contact_id = created["result"]
    activity, sale, bad_sale, _note, bad_color = await client.batch(
        call("create-activity", login_token=t, schedule_with=contact_id, regarding="Demo",
             type="meeting", color="00FF00", start_time="2026-11-23T09:30:00Z",
             end_time="2026-11-23T10:00:00Z", timeless="false"),
        call("create-sales-opp", login_token=t, sales_field_data={
            sales_fields["Contact ID"]: contact_id, sales_fields["Status"]: "1",
            sales_fields["Amount"]: "1234.50"}),
        call("create-sales-opp", login_token=t, sales_field_data={
            sales_fields["Contact ID"]: contact_id, sales_fields["Status"]: "7"}),
        call("create-note", login_token=t, contact_id=contact_id, details="Hi 👋", type="Call"),
        call("create-activity", login_token=t, schedule_with=contact_id, color="red"),
    )  # fmt: skip
    assert bad_sale["error"]["code"] == "invalid-parameter"
    assert bad_color["error"]["code"] == "invalid-parameter"
    activity_id = activity["result"]
    completed, info, notes, sales, missing = await client.batch(
        call("complete-activity", login_token=t, activity_id=activity_id, result="Signed"),
        call("get-contact-info", login_token=t, contact_id=contact_id),
        call("get-notes-for-contact", login_token=t, contact_id=contact_id),
        call("get-sales-for-contact", login_token=t, contact_id=contact_id),
        call("get-contact-info", login_token=t, contact_id="999999"),
    )
    assert info["result"]["contact-ids"] == [contact_id]
    assert info["result"]["contacts"][0][name] == "Åsa Öberg"
    assert sales["result"]["sales-ids"] == [sale["result"]]
    assert sales["result"]["sales"][0][sales_fields["Amount"]] == "1234.50"
    assert len(notes["result"]["notes"]) == 2  # the note and the completed activity's note
    assert completed["result"]["activity-id"] == activity_id
    assert missing["error"]["code"] == "not-found"
    stored = store.activities[activity_id]
    assert (stored["completed"], stored["result"], stored["type"]) == ("true", "Signed", "meeting")
    assert stored["start-time"] == "2026-11-23T09:30:00Z"
    updated = await client.one(
        "update-contact",
        login_token=t,
        match_by_field_data={email: "ASA@example.se"},
        contact_field_data={name: "Åsa Öberg-Lind"},
    )
    assert updated["result"] == {"status": "updated", "contact-ids": [contact_id]}
    assert client.emulator.stats.writes == 8


# -- quota and statistics ------------------------------------------------------------------------
async def test_429_with_both_retry_after_forms() -> None:
    quota = QuotaConfig(rate=0.01, burst=1, retry_after="mixed")
    async for c in _client(SandboxConfig(seed=7, contacts=5, quota=quota)):
        status, _ = await c.post([call("greet")])
        assert status == 200
        headers = []
        for _ in range(2):
            async with c.session.post(c.emulator.base_url, json=[call("greet")]) as response:
                assert response.status == 429
                assert await response.json() == c.emulator.rate_limit_body()
                headers.append(response.headers["Retry-After"])
        assert int(headers[0]) >= 1
        assert parsedate_to_datetime(headers[1]).tzinfo is not None
        assert c.emulator.stats.rate_limited == 2
        assert c.emulator.stats.calls["greet"] == 1


async def test_stats_and_admin_endpoints(client: Client) -> None:
    token = await client.login()
    await client.batch(
        call("get-contacts", "a", login_token=token, page_size="20"),
        call("get-sales", "b", login_token=token, page_size="40"),
        call("greet"),
    )
    stats = client.emulator.stats
    assert stats.calls_per_request == {1: 1, 3: 1}
    assert stats.logins == 1
    assert stats.largest_batch == 40
    assert stats.requests == 2

    stats_url = client.emulator.base_url + "/_sandbox/stats"
    async with client.session.get(stats_url) as response:
        assert response.status == 200
        payload = await response.json()
    assert payload["calls_per_request"] == {"1": 1, "3": 1}
    assert payload["largest_batch"] == 40
    assert payload["logins"] == 1
    assert payload["calls"]["get-contacts"] == 1
    assert isinstance(payload["achieved_rate"], float)
    assert stats.requests == 2  # admin requests are not counted

    async with client.session.post(client.emulator.base_url + "/_sandbox/reset") as response:
        assert response.status == 200
    assert (stats.requests, stats.logins, stats.largest_batch) == (0, 0, 0)


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_refuses_non_loopback_host() -> None:
    result = CliRunner().invoke(sandbox, ["--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "loopback" in result.output


def test_cli_builds_the_config() -> None:
    overrides = {"drop": 0.0, "call_error": 0.5, "server_error": None}
    config = build_config(
        seed=3, contacts=10, activities=20, sales=5, rate=2.5, burst=3, retry_after="seconds",
        fault_rate=0.1, overrides=overrides, token_ttl=60.0, latency=0.0, field_id_offset=7,
    )  # fmt: skip
    assert config.quota == QuotaConfig(rate=2.5, burst=3, retry_after="seconds")
    assert config.faults == FaultConfig(
        server_error=0.1, drop=0.0, truncate=0.1, slow=0.1, slow_seconds=0.05,
        row_failure=0.1, call_error=0.5,
    )  # fmt: skip
    assert (config.seed, config.contacts, config.field_id_offset, config.token_ttl) == (
        3, 10, 7, 60.0,
    )  # fmt: skip


async def test_cli_json_serves_both_emulators() -> None:
    code = "from etl.cli.sandbox_cmd import sandbox; sandbox()"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "--json", "--contacts", "5", "--field-id-offset", "10",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=15)
        info = json.loads(line)
        assert set(info) == {"salesmanago", "salesnexus"}
        sn = info["salesnexus"]
        assert set(sn) == {"base_url", "email", "password", "token"}
        assert set(info["salesmanago"]) >= {"base_url", "client_id", "api_key", "api_secret"}
        async with aiohttp.ClientSession() as session:
            calls = [call("get-all-fields", login_token=sn["token"])]
            async with session.post(sn["base_url"], json=calls) as response:
                fields = (await response.json())[0]["result"]
        assert {f["id"] for f in fields if f["name"] == "Email"} == {143}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
