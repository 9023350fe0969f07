"""The SALESmanago emulator over real loopback HTTP: auth, limits, paging, upserts, faults."""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

from etl.sandbox import fake
from etl.sandbox.config import FaultConfig, QuotaConfig, SandboxConfig
from etl.sandbox.salesmanago import SalesManagoEmulator
from etl.sandbox.salesmanago_store import SalesManagoStore, now_ms

SMALL = SandboxConfig(seed=11, contacts=120, activities=240, sales=60)


def auth_block(sm: SalesManagoEmulator, *, secret: str | None = None) -> dict[str, Any]:
    creds = sm.credentials
    raw = creds.api_key + creds.client_id + (creds.api_secret if secret is None else secret)
    return {
        "clientId": creds.client_id,
        "apiKey": creds.api_key,
        "requestTime": int(time.time() * 1000),
        "sha": hashlib.sha1(raw.encode()).hexdigest(),
    }


async def call(
    session: aiohttp.ClientSession,
    sm: SalesManagoEmulator,
    path: str,
    body: dict[str, Any],
    *,
    auth: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    payload = {**(auth_block(sm) if auth is None else auth), "owner": sm.credentials.owner, **body}
    async with session.post(f"{sm.base_url}/{path}", json=payload) as response:
        return response.status, await response.json()


def emails_of(sm: SalesManagoEmulator, n: int) -> list[str]:
    return [sm.store.contacts[cid]["email"] for cid in sm.store.ordered_ids()[:n]]


# -- seeding --------------------------------------------------------------------------------------
def test_seeding_is_deterministic_and_counts_match_the_config() -> None:
    config = SandboxConfig(seed=5, contacts=400, activities=700, sales=150)
    first, second = SalesManagoStore(config), SalesManagoStore(config)
    assert json.dumps(first.contacts) == json.dumps(second.contacts)
    assert first.ordered_ids() == second.ordered_ids()
    other = SalesManagoStore(SandboxConfig(seed=6, contacts=400, activities=700, sales=150))
    assert set(other.contacts).isdisjoint(first.contacts)

    assert len(first) == 400
    assert first.activity_count() == 700
    assert first.purchase_count() == 150
    kinds = {
        e["contactExtEventType"] for c in first.contacts.values() for e in c["contactExtEvents"]
    }
    assert kinds == {"PURCHASE", "CART", "VISIT"}

    contacts = list(first.contacts.values())
    assert {len(c) for c in contacts} == {27}
    assert max(len(c["company"] or "") for c in contacts) == 255
    assert first.get_by_email(fake.ODD_EMAIL.lower())["email"] == fake.ODD_EMAIL
    assert any(c["birthdayYear"] is None and c["birthdayMonth"] for c in contacts)
    assert any(c["birthdayYear"] and c["birthdayDay"] for c in contacts)
    assert any(c["address"]["city"] is None for c in contacts)
    assert any(c["name"] == "" and c["phone"] == "" for c in contacts)
    assert any("'" in (c["name"] or "") for c in contacts)
    assert any(not c["name"].isascii() for c in contacts if c["name"])
    names = {p["name"] for c in contacts for p in c["properties"]}
    assert "custom.loyalty_tier" in names and all(n.startswith("custom.") for n in names)
    assert any(n["note"] == fake.ODD_NOTE for c in contacts for n in c["contactNotes"])
    assert all(c["createdOn"] >= fake.ANCHOR_MS - fake.THREE_YEARS_MS for c in contacts)
    assert all(c["createdOn"] <= c["modifiedOn"] <= fake.ANCHOR_MS for c in contacts)


def test_seeded_uuid_matches_the_uuid_module() -> None:
    a, b = random.Random(3), random.Random(3)
    assert [fake.seeded_uuid(a) for _ in range(200)] == [
        fake.seeded_uuid_reference(b) for _ in range(200)
    ]


# -- authentication and envelope -----------------------------------------------------------------
async def test_authentication_checks_every_part_of_the_block() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        email = emails_of(sm, 1)[0]
        body = {"email": email}
        status, answer = await call(session, sm, "contact/hasContact", body)
        assert (status, answer["success"], answer["result"]) == (200, True, True)

        failed = {"success": False, "message": ["Authentication failed"]}
        wrong_secret = auth_block(sm, secret="not-the-secret")
        assert await call(session, sm, "contact/hasContact", body, auth=wrong_secret) == (
            200,
            failed,
        )
        for key, value in (("clientId", "other"), ("apiKey", "other"), ("requestTime", "1")):
            bad = {**auth_block(sm), key: value}
            assert await call(session, sm, "contact/hasContact", body, auth=bad) == (200, failed)
        assert sm.stats.calls["contact/hasContact"] == 5

        async with session.post(f"{sm.base_url}/contact/hasContact", data=b"{nope") as response:
            assert response.status == 400
            assert (await response.json())["success"] is False


# -- limits ---------------------------------------------------------------------------------------
async def test_identifier_limit_of_50_on_every_lookup_method() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        ids = sm.store.ordered_ids()[:51]
        emails = emails_of(sm, 51)
        methods = {
            "contact/basic": ("email", emails),
            "contact/basicById": ("id", ids),
            "contact/list": ("email", emails),
            "contact/listById": ("contactId", ids),
            "contact/listAll": ("email", emails),
            "contact/listAllById": ("contactId", ids),
        }
        for path, (key, values) in methods.items():
            status, answer = await call(session, sm, path, {key: values})
            assert status == 400, path
            assert answer["success"] is False
            assert answer["message"] == [
                f"too many identifiers in '{key}': 51 given, the limit is 50 per call"
            ]
            status, answer = await call(session, sm, path, {key: values[:50]})
            assert (status, answer["success"], len(answer["contacts"])) == (200, True, 50), path
            assert sm.stats.batch_sizes[path] == [51, 50]


async def test_page_size_and_batch_and_field_length_limits() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        status, answer = await call(
            session, sm, "contact/paginatedContactList", {"page": 0, "size": 1001}
        )
        assert (status, answer) == (
            400,
            {
                "success": False,
                "message": ["size 1001 is over the limit of 1000 contacts per page"],
            },
        )
        status, answer = await call(
            session, sm, "contact/paginatedContactList", {"page": 0, "size": 1000}
        )
        assert (status, len(answer["contacts"]), answer["hasMore"]) == (200, 120, False)

        entries = [{"contact": {"email": f"bulk{i}@example.com"}} for i in range(1001)]
        status, answer = await call(session, sm, "contact/batchupsert", {"upsertDetails": entries})
        assert status == 400
        assert answer["message"] == [
            "too many entries in 'upsertDetails': 1001 given, the limit is 1000 per call"
        ]
        assert sm.store.get_by_email("bulk0@example.com") is None
        status, answer = await call(
            session, sm, "contact/batchupsert", {"upsertDetails": entries[:1000]}
        )
        assert (status, len(answer["contactIds"]), answer["failedContacts"]) == (200, 1000, [])
        assert len(sm.store) == 1120
        assert sm.stats.largest_batch == 1001

        contact = {"email": "long@example.com", "company": "c" * 256}
        status, answer = await call(session, sm, "contact/upsert", {"contact": contact})
        assert (status, answer["message"]) == (
            400,
            ["field 'company' is 256 characters, the limit is 255"],
        )
        assert sm.store.get_by_email("long@example.com") is None
        contact["company"] = "c" * 255
        status, answer = await call(session, sm, "contact/upsert", {"contact": contact})
        assert (status, answer["success"]) == (200, True)
        assert sm.store.contacts[answer["contactId"]]["company"] == "c" * 255


# -- paging ---------------------------------------------------------------------------------------
async def test_paging_returns_every_contact_once_in_a_stable_order() -> None:
    config = SandboxConfig(seed=3, contacts=1234, activities=100, sales=10)
    async with SalesManagoEmulator(config) as sm, aiohttp.ClientSession() as session:
        seen: list[dict[str, Any]] = []
        page = 0
        while True:
            status, answer = await call(
                session, sm, "contact/paginatedContactList", {"page": page, "size": 100}
            )
            assert status == 200 and answer["success"] is True
            seen.extend(answer["contacts"])
            if not answer["hasMore"]:
                break
            page += 1
        assert page == 12 and len(answer["contacts"]) == 34
        ids = [c["id"] for c in seen]
        assert ids == sm.store.ordered_ids() and len(set(ids)) == 1234
        keys = [(c["createdOn"], c["id"]) for c in seen]
        assert keys == sorted(keys)
        status, answer = await call(
            session, sm, "contact/paginatedContactList", {"page": 13, "size": 100}
        )
        assert (answer["contacts"], answer["hasMore"]) == ([], False)
        assert sm.stats.batch_sizes["contact/paginatedContactList"] == [100] * 14


# -- upserts --------------------------------------------------------------------------------------
async def test_batchupsert_matches_case_insensitively_and_merges() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        existing_id = sm.store.add_contact(
            email="Merge.Me@Example.com",
            name="Old Name",
            company="Old Co",
            contactTags=[{"tag": "KEEP"}, {"tag": "DROP"}],
            properties=[{"name": "custom.a", "value": "1"}, {"name": "custom.b", "value": "2"}],
        )
        entries = [
            {
                "contact": {"email": "MERGE.me@example.COM", "name": "Zoë Müller", "company": None},
                "tags": ["NEW", "keep"],
                "removeTags": ["drop"],
                "properties": {"custom.b": "two", "custom.c": "3"},
                "birthday": "0229",
            },
            {"contact": {"email": "not-an-email"}},
            {"contact": {"email": "fresh@example.com", "city": "x" * 256}},
            {
                "contact": {"email": "Fresh@Example.com", "address": {"city": "Łódź"}},
                "birthday": "19801017",
                "tags": ["VIP"],
            },
            {"contact": {"email": "bad-birthday@example.com"}, "birthday": "19801340"},
            {"contact": {"name": "No Email"}, "tags": ["X"]},
        ]
        status, answer = await call(session, sm, "contact/batchupsert", {"upsertDetails": entries})
        assert status == 200 and answer["success"] is True and answer["message"] == []
        fresh_id = sm.store.id_for_email("fresh@example.com")
        assert answer["contactIds"] == {
            "MERGE.me@example.COM": existing_id,
            "Fresh@Example.com": fresh_id,
        }
        assert answer["failedContacts"] == [
            {
                "index": 1,
                "email": "not-an-email",
                "message": "field 'email' is not a valid e-mail address: 'not-an-email'",
            },
            {
                "index": 2,
                "email": "fresh@example.com",
                "message": "field 'city' is 256 characters, the limit is 255",
            },
            {
                "index": 4,
                "email": "bad-birthday@example.com",
                "message": "field 'birthday' is not a valid date: '19801340'",
            },
            {"index": 5, "email": None, "message": "field 'email' is missing"},
        ]
        merged = sm.store.contacts[existing_id]
        assert merged["email"] == "Merge.Me@Example.com"
        assert (merged["name"], merged["company"]) == ("Zoë Müller", "Old Co")
        assert [t["tag"] for t in merged["contactTags"]] == ["KEEP", "NEW"]
        assert merged["properties"] == [
            {"name": "custom.a", "value": "1"},
            {"name": "custom.b", "value": "two"},
            {"name": "custom.c", "value": "3"},
        ]
        birthday = (merged["birthdayYear"], merged["birthdayMonth"], merged["birthdayDay"])
        assert birthday == (None, 2, 29)
        fresh = sm.store.contacts[fresh_id]
        assert (fresh["email"], fresh["address"]["city"], fresh["birthdayYear"]) == (
            "Fresh@Example.com",
            "Łódź",
            1980,
        )
        assert sm.store.get_by_email("bad-birthday@example.com") is None
        assert len(sm.store) == 122
        assert sm.stats.writes == 1

        status, answer = await call(
            session,
            sm,
            "contact/upsert",
            {"contact": {"email": "FRESH@example.com"}, "newEmail": "renamed@example.com"},
        )
        assert (status, answer["contactId"]) == (200, fresh_id)
        assert sm.store.get_by_email("fresh@example.com") is None
        assert sm.store.contacts[fresh_id]["email"] == "renamed@example.com"


async def test_row_failure_at_rate_one_fails_every_entry() -> None:
    config = SandboxConfig(seed=2, contacts=10, faults=FaultConfig(row_failure=1.0))
    async with SalesManagoEmulator(config) as sm, aiohttp.ClientSession() as session:
        entries = [{"contact": {"email": f"row{i}@example.com"}} for i in range(5)]
        entries.append({"contact": {"email": "broken"}})
        before = json.dumps(sm.store.contacts)
        status, answer = await call(session, sm, "contact/batchupsert", {"upsertDetails": entries})
        assert (status, answer["success"], answer["contactIds"]) == (200, True, {})
        assert [f["index"] for f in answer["failedContacts"]] == [0, 1, 2, 3, 4, 5]
        messages = {f["message"] for f in answer["failedContacts"][:5]}
        assert messages == {"Internal error while saving the contact"}
        assert answer["failedContacts"][5]["message"].startswith("field 'email' is not a valid")
        assert sm.stats.faults["row_failure"] == 5
        assert json.dumps(sm.store.contacts) == before


async def test_insert_update_delete_and_has_contact() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        status, answer = await call(
            session, sm, "contact/insert", {"contact": {"email": "new@example.com", "name": "N"}}
        )
        new_id = answer["contactId"]
        status, answer = await call(
            session, sm, "contact/insert", {"contact": {"email": "NEW@example.com"}}
        )
        assert (status, answer["success"]) == (200, False)
        assert answer["message"] == ["a contact with the email 'NEW@example.com' already exists"]

        status, answer = await call(
            session,
            sm,
            "contact/update",
            {"email": "new@example.com", "contact": {"email": "moved@example.com", "fax": "1"}},
        )
        assert (status, answer["contactId"]) == (200, new_id)
        assert sm.store.contacts[new_id]["email"] == "moved@example.com"
        status, answer = await call(
            session, sm, "contact/update", {"email": "nobody@example.com", "contact": {}}
        )
        assert (status, answer["success"]) == (200, False)

        status, answer = await call(session, sm, "contact/delete", {"email": "MOVED@example.com"})
        assert (status, answer["contactId"]) == (200, new_id)
        assert new_id in sm.store.deleted and new_id not in sm.store.ordered_ids()
        status, answer = await call(session, sm, "contact/listById", {"contactId": [new_id]})
        assert answer["contacts"] == []
        status, answer = await call(
            session, sm, "contact/hasContact", {"email": "moved@example.com"}
        )
        assert (answer["result"], answer["contactId"]) == (False, None)
        assert sm.stats.writes == 5


async def test_basic_shape_and_lookup_keys() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        ids = sm.store.ordered_ids()[:3]
        status, answer = await call(
            session, sm, "contact/basicById", {"id": [ids[0], "unknown", ids[1]]}
        )
        assert [c["contactId"] for c in answer["contacts"]] == [ids[0], ids[1]]
        basic = answer["contacts"][0]
        assert "id" not in basic and "contactTags" not in basic and "lastVisit" in basic
        status, answer = await call(session, sm, "contact/basicById", {"contactId": [ids[2]]})
        assert status == 200
        assert [c["contactId"] for c in answer["contacts"]] == [ids[2]]
        email = sm.store.contacts[ids[2]]["email"]
        _, answer = await call(session, sm, "contact/list", {"email": [email.upper()]})
        assert answer["contacts"] == [json.loads(json.dumps(sm.store.contacts[ids[2]]))]


# -- incremental windows --------------------------------------------------------------------------
async def test_modified_and_created_windows_are_half_open() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        start = now_ms()
        old_id = sm.store.ordered_ids()[0]
        sm.store.modify(old_id, name="Changed")
        _, answer = await call(session, sm, "contact/upsert", {"contact": {"email": "w@ex.com"}})
        new_id = answer["contactId"]
        new = sm.store.contacts[new_id]
        end = now_ms() + 1

        _, answer = await call(session, sm, "contact/createdContacts", {"from": start, "to": end})
        assert answer["createdContacts"] == [{"id": new_id, "email": "w@ex.com"}]
        _, answer = await call(session, sm, "contact/modifiedContacts", {"from": start, "to": end})
        assert {c["id"] for c in answer["modifiedContacts"]} == {old_id, new_id}
        window = {"from": start, "to": new["createdOn"]}
        _, answer = await call(session, sm, "contact/createdContacts", window)
        assert answer["createdContacts"] == []
        _, answer = await call(session, sm, "contact/modifiedContacts", {"from": 0, "to": "x"})
        assert answer["success"] is False


# -- transport behaviour --------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_quota_answers_429_with_retry_after(form: str) -> None:
    quota = QuotaConfig(rate=0.01, burst=2, retry_after=form)  # type: ignore[arg-type]
    config = SandboxConfig(seed=1, contacts=5, quota=quota)
    async with SalesManagoEmulator(config) as sm, aiohttp.ClientSession() as session:
        body = {**auth_block(sm), "email": "x@example.com"}
        statuses = []
        for _ in range(3):
            async with session.post(f"{sm.base_url}/contact/hasContact", json=body) as response:
                statuses.append(response.status)
                header = response.headers.get("Retry-After")
                answer = await response.json()
        assert statuses == [200, 200, 429]
        assert answer == {"success": False, "message": ["Rate limit exceeded"]}
        assert header is not None
        if form == "seconds":
            assert header.isdigit() and int(header) >= 1
        else:
            assert parsedate_to_datetime(header) > datetime.now(UTC)
        assert (sm.stats.rate_limited, sm.stats.calls["contact/hasContact"]) == (1, 2)


async def test_injected_faults_at_rate_one() -> None:
    body_of = {"email": "x@example.com"}
    faults = {
        "server_error": FaultConfig(server_error=1.0, seed=1),
        "drop": FaultConfig(drop=1.0, seed=1),
        "truncate": FaultConfig(truncate=1.0, seed=1),
    }
    for kind, fault_config in faults.items():
        config = SandboxConfig(seed=1, contacts=5, faults=fault_config)
        async with SalesManagoEmulator(config) as sm, aiohttp.ClientSession() as session:
            url = f"{sm.base_url}/contact/hasContact"
            if kind == "drop":
                with pytest.raises(aiohttp.ClientError):
                    async with session.post(url, json={**auth_block(sm), **body_of}) as response:
                        await response.read()
            else:
                async with session.post(url, json={**auth_block(sm), **body_of}) as response:
                    status, raw = response.status, await response.read()
                if kind == "server_error":
                    assert status in (500, 502, 503, 504)
                else:
                    assert status == 200
                    with pytest.raises(ValueError):
                        json.loads(raw)
            assert sm.stats.faults[kind] == 1


# -- external events and tasks --------------------------------------------------------------------
async def test_external_events_add_update_delete() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        contact_id = sm.store.ordered_ids()[5]
        email = sm.store.contacts[contact_id]["email"]
        event = {
            "date": 1_700_000_000_000,
            "description": 'Purchase card "Super Bonus"',
            "products": "p01, p02",
            "value": 1234.43,
            "contactExtEventType": "PURCHASE",
            "detail1": "card",
            "externalId": "A-1",
        }
        purchases = sm.store.purchase_count()
        status, answer = await call(
            session,
            sm,
            "contact/addContactExtEvent",
            {"email": email.upper(), "contactEvent": event},
        )
        assert status == 200 and answer["success"] is True
        event_id = answer["eventId"]
        assert sm.store.purchase_count() == purchases + 1
        _, listed = await call(session, sm, "contact/listById", {"contactId": [contact_id]})
        stored = next(
            e for e in listed["contacts"][0]["contactExtEvents"] if e["eventId"] == event_id
        )
        assert (stored["value"], stored["detail1"], stored["detail20"]) == (1234.43, "card", None)

        changed = {**event, "eventId": event_id, "value": 10.5, "contactExtEventType": "CART"}
        _, answer = await call(
            session, sm, "contact/updateContactExtEvent", {"contactEvent": changed}
        )
        assert answer["eventId"] == event_id
        assert sm.store.purchase_count() == purchases
        _, answer = await call(session, sm, "contact/deleteContactExtEvent", {"eventId": event_id})
        assert answer["result"] == "deleted"
        events = sm.store.contacts[contact_id]["contactExtEvents"]
        assert event_id not in {e["eventId"] for e in events}

        _, answer = await call(
            session,
            sm,
            "contact/addContactExtEvent",
            {"contactId": contact_id, "contactEvent": {**event, "contactExtEventType": "SALE"}},
        )
        assert answer["success"] is False and "contactExtEventType" in answer["message"][0]
        status, answer = await call(
            session,
            sm,
            "contact/addContactExtEvent",
            {"contactId": contact_id, "contactEvent": {**event, "description": "d" * 2049}},
        )
        assert (status, answer["message"]) == (
            400,
            ["field 'description' is 2049 characters, the limit is 2048"],
        )
        _, answer = await call(
            session,
            sm,
            "contact/addContactExtEvent",
            {"email": "nobody@example.com", "contactEvent": event},
        )
        assert answer == {
            "success": False,
            "message": ["Contact not found: email 'nobody@example.com'"],
        }


async def test_update_task_adds_updates_and_finishes() -> None:
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        contact_id = sm.store.ordered_ids()[7]
        email = sm.store.contacts[contact_id]["email"]
        activities = sm.store.activity_count()
        task = {"contactEmail": email, "note": "Call", "date": 1_800_000_000_000, "cc": ""}
        _, answer = await call(
            session,
            sm,
            "contact/updateTask",
            {"finished": False, "smContactTaskReq": {**task, "reminder": "_30_MIN"}},
        )
        task_id = answer["taskId"]
        assert sm.store.activity_count() == activities + 1
        stored = next(
            t for t in sm.store.contacts[contact_id]["contactTasks"] if t["id"] == task_id
        )
        assert stored == {
            "id": task_id,
            "note": "Call",
            "date": 1_800_000_000_000,
            "cc": "",
            "reminder": 1_800_000_000_000 - 30 * 60_000,
        }
        _, answer = await call(
            session,
            sm,
            "contact/updateTask",
            {"finished": False, "smContactTaskReq": {**task, "id": task_id, "note": "Again"}},
        )
        assert answer["taskId"] == task_id and sm.store.activity_count() == activities + 1
        tasks = sm.store.contacts[contact_id]["contactTasks"]
        assert [t["note"] for t in tasks if t["id"] == task_id] == ["Again"]

        _, answer = await call(
            session,
            sm,
            "contact/updateTask",
            {"finished": True, "smContactTaskReq": {"id": task_id}},
        )
        assert (answer["success"], answer["taskId"]) == (True, task_id)
        assert sm.store.activity_count() == activities
        _, answer = await call(
            session,
            sm,
            "contact/updateTask",
            {"finished": True, "smContactTaskReq": {"id": task_id}},
        )
        assert answer == {"success": False, "message": [f"Task not found: id {task_id!r}"]}
        assert sm.stats.writes == 4


async def test_bulk_created_contacts_page_in_creation_order_after_deletes() -> None:
    """Contacts of several batchupserts (with deletes between them) page once each, in the
    stable ``(createdOn, id)`` order; a batch's contacts share its request time."""
    async with SalesManagoEmulator(SMALL) as sm, aiohttp.ClientSession() as session:
        kept: set[str] = set()
        for batch in range(3):
            details = [
                {"contact": {"email": f"bulk{batch}-{i}@example.de", "name": f"Bulk {i}"}}
                for i in range(300)
            ]
            status, answer = await call(
                session, sm, "contact/batchupsert", {"upsertDetails": details}
            )
            assert status == 200 and answer["failedContacts"] == []
            ids = answer["contactIds"]
            assert len({sm.store.get(cid)["createdOn"] for cid in ids.values()}) == 1
            gone = f"bulk{batch}-7@example.de"
            status, _ = await call(session, sm, "contact/delete", {"email": gone})
            assert status == 200
            kept.update(cid for email, cid in ids.items() if email != gone)
        seen: list[dict[str, Any]] = []
        for page in range(2):
            status, answer = await call(
                session, sm, "contact/paginatedContactList", {"page": page, "size": 1000}
            )
            seen.extend(answer["contacts"])
        keys = [(c["createdOn"], c["id"]) for c in seen]
        assert keys == sorted(keys) and len(keys) == len(set(keys)) == SMALL.contacts + 3 * 299
        assert kept <= {cid for _, cid in keys}
