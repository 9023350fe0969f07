"""The migration use case end to end, both directions, over real loopback HTTP.

Expectations are computed here from the emulators' raw stores with plain Python, then compared with
what the target store holds after the run, record by record, and with the crosswalk and rejects.
"""

from __future__ import annotations

import copy
import csv
import math
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from etl.clients import Pacing
from etl.pipeline.migrate import MigrationJob, run_migration
from etl.pipeline.run import RunSummary
from etl.sandbox import FaultConfig, Sandbox, SandboxConfig
from etl.sandbox.salesmanago_store import SalesManagoStore
from etl.sandbox.salesnexus_store import SalesNexusStore
from tests.support import sm_config, sn_config

SEEDED = SandboxConfig(contacts=150, activities=300, sales=80)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROPERTY_MAP = {
    "custom.lead_source": "Lead Source",
    "custom.loyalty_tier": "Customer Tier",
    "custom.newsletter": "Newsletter Opt-In",
}
SN_CUSTOM = ("Mobile Phone", "Lead Source", "Customer Tier", "Newsletter Opt-In", "Annual Revenue")
NO_EMAIL = "cannot upsert without email: no email address"
VISIT = "SalesNexus has no counterpart for a SALESmanago visit"
STATUS = {"0": "open", "1": "won", "2": "lost"}
PACED = Pacing(rate=4.0, burst=1, max_in_flight=8)
TABLES = ("contacts", "activities", "sales")

Key = tuple[str, str]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SEEDED) as sb:
        yield sb


def sn_to_sm(sb: Sandbox, out: Path, **kw: Any) -> MigrationJob:
    return MigrationJob(
        pipeline="sn_to_sm",
        source_crm="salesnexus",
        source=sn_config(sb.salesnexus),
        target_crm="salesmanago",
        target=sm_config(sb.salesmanago, **kw),
        out=out,
    )


def sm_to_sn(sb: Sandbox, out: Path, *, dry_run: bool = False, **kw: Any) -> MigrationJob:
    return MigrationJob(
        pipeline="sm_to_sn",
        source_crm="salesmanago",
        source=sm_config(sb.salesmanago),
        target_crm="salesnexus",
        target=sn_config(sb.salesnexus, **kw),
        out=out,
        property_map=PROPERTY_MAP,
        dry_run=dry_run,
    )


# --- plain-Python helpers -------------------------------------------------------------------------
def valid_email(value: str | None) -> str | None:
    email = (value or "").strip().lower()
    return email if email and EMAIL.match(email) else None


def ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def iso_ms(text: str) -> int:
    return ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


def iso_seconds(epoch_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=epoch_ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def crosswalk(out: Path) -> dict[Key, tuple[str, str]]:
    rows = pq.read_table(out / "crosswalk.parquet").to_pylist()
    assert len({(r["table"], r["source_id"]) for r in rows}) == len(rows)
    return {(r["table"], r["source_id"]): (r["target_id"], r["target_kind"]) for r in rows}


def rejects(out: Path) -> dict[Key, tuple[str, str]]:
    with (out / "rejects.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len({(r["table"], r["source_id"]) for r in rows}) == len(rows)
    return {(r["table"], r["source_id"]): (r["status"], r["reason"]) for r in rows}


def sm_counts(store: SalesManagoStore) -> tuple[int, int, int]:
    contacts = store.contacts.values()
    return (
        len(store.contacts),
        sum(len(c["contactTasks"]) for c in contacts),
        sum(len(c["contactExtEvents"]) for c in contacts),
    )


def sn_counts(store: SalesNexusStore) -> tuple[int, int, int, int]:
    return len(store.contacts), len(store.activities), len(store.notes), len(store.sales)


def check_accounting(
    out: Path, summary: RunSummary, sources: set[Key], migrated: set[Key]
) -> dict[Key, tuple[str, str]]:
    """Every source record is in exactly one of crosswalk and rejects; the summary agrees."""
    moved, refused = crosswalk(out), rejects(out)
    assert set(moved) == migrated
    assert set(moved) | set(refused) == sources
    assert not set(moved) & set(refused)
    rows = {t: sum(1 for table, _ in moved if table == t) for t in TABLES}
    assert summary.rows == rows
    for status in ("rejected", "skipped"):
        statuses = {"rejected": {"rejected", "failed"}, "skipped": {"skipped"}}[status]
        counted = {
            t: sum(1 for (table, _), (s, _) in refused.items() if table == t and s in statuses)
            for t in rows
        }
        assert summary.details[status] == counted
    return refused


# --- SalesNexus -> SALESmanago --------------------------------------------------------------------
async def test_salesnexus_to_salesmanago(sandbox: Sandbox, tmp_path: Path) -> None:
    sn, sm = sandbox.salesnexus.store, sandbox.salesmanago.store
    f = {field.name: str(field.id) for field in sn.fields if field.table == "contact"}
    s = {field.name: str(field.id) for field in sn.fields if field.table == "sales"}
    before = {c["email"].lower(): copy.deepcopy(c) for c in sm.contacts.values()}
    counts_before = sm_counts(sm)

    emails = {cid: valid_email(rec[f["Email"]]) for cid, rec in sn.contacts.items()}
    moving = {cid: email for cid, email in emails.items() if email}
    assert all(rec[f["Email"]] == "" for cid, rec in sn.contacts.items() if cid not in moving)
    assert 0 < len(moving) < len(sn.contacts)
    activities = {aid: a for aid, a in sn.activities.items() if a["schedule-with"] in moving}
    sales = {sid: x for sid, x in sn.sales.items() if x[s["Contact ID"]] in moving}

    summary = await run_migration(sn_to_sm(sandbox, tmp_path))

    sources = {("contacts", c) for c in sn.contacts}
    sources |= {("activities", a) for a in sn.activities} | {("sales", x) for x in sn.sales}
    migrated = {("contacts", c) for c in moving} | {("activities", a) for a in activities}
    migrated |= {("sales", x) for x in sales}
    refused = check_accounting(tmp_path, summary, sources, migrated)
    assert summary.status == "partial"
    assert summary.details["written"] == summary.rows
    assert summary.details["failed"] == {"contacts": 0, "activities": 0, "sales": 0}
    for cid in sn.contacts.keys() - moving.keys():
        assert refused[("contacts", cid)] == ("rejected", NO_EMAIL)
    for aid, act in sn.activities.items():
        if aid not in activities:
            why = f"its contact {act['schedule-with']} was not migrated: {NO_EMAIL}"
            assert refused[("activities", aid)] == ("rejected", why)
    for sid, sale in sn.sales.items():
        if sid not in sales:
            why = f"its contact {sale[s['Contact ID']]} was not migrated: {NO_EMAIL}"
            assert refused[("sales", sid)] == ("rejected", why)

    moved = crosswalk(tmp_path)
    new_emails = set(moving.values()) - before.keys()
    assert sm_counts(sm) == (
        counts_before[0] + len(new_emails),
        counts_before[1] + len(activities),
        counts_before[2] + len(sales),
    )
    for cid, email in moving.items():
        rec = sn.contacts[cid]
        target = sm.get_by_email(email)
        assert target is not None
        assert moved[("contacts", cid)] == (target["id"], "contact")
        old = before.get(email, {"address": {}, "properties": [], "contactTags": []})

        def value(name: str, old_value: Any, rec: dict[str, str] = rec) -> Any:
            return rec[f[name]] if rec[f[name]] != "" else old_value

        assert target["name"] == value("Full Name", old.get("name"))
        assert target["company"] == value("Company", old.get("company"))
        assert target["phone"] == value("Phone", old.get("phone"))
        assert target["address"]["city"] == value("City", old["address"].get("city"))
        assert target["province"] == value("State", old.get("province"))
        props = {p["name"]: p["value"] for p in old["properties"]}
        props.update({name: rec[f[name]] for name in SN_CUSTOM if rec[f[name]] != ""})
        assert {p["name"]: p["value"] for p in target["properties"]} == props
        tags = [t["tag"] for t in old["contactTags"]]
        for tag in (t.strip() for t in rec[f["Tags"]].split(",")):
            if tag and tag.lower() not in {t.lower() for t in tags}:
                tags.append(tag)
        assert [t["tag"] for t in target["contactTags"]] == tags
        if rec[f["Birthday"]]:
            year, month, day = (int(p) for p in rec[f["Birthday"]].split("-"))
            assert (target["birthdayYear"], target["birthdayMonth"], target["birthdayDay"]) == (
                year,
                month,
                day,
            )

    for aid, act in activities.items():
        task_id, kind = moved[("activities", aid)]
        assert kind == "task"
        owner = sm.get_by_email(moving[act["schedule-with"]])
        assert owner is not None
        (task,) = [t for t in owner["contactTasks"] if t["id"] == task_id]
        parts = [act["regarding"], act["details"], act["result"] and f"Result: {act['result']}"]
        start = iso_ms(act["start-time"])
        reminder = 86_400_000 if act["timeless"] == "true" else 1_800_000
        assert task == {
            "id": task_id,
            "note": "\n\n".join(p for p in parts if p),
            "date": start,
            "cc": None,
            "reminder": start - reminder,
        }
    for sid, sale in sales.items():
        event_id, kind = moved[("sales", sid)]
        assert kind == "purchase"
        owner = sm.get_by_email(moving[sale[s["Contact ID"]]])
        assert owner is not None
        (event,) = [e for e in owner["contactExtEvents"] if e["eventId"] == event_id]
        close = sale[s["Close Date"]]
        midnight = datetime.combine(date.fromisoformat(close or "1970-01-01"), datetime.min.time())
        when = ms(midnight.replace(tzinfo=UTC)) if close else iso_ms(sale[s["Created"]])
        product_line = sale[s["Product Line"]]
        expected = dict.fromkeys(event, None)
        expected.update(
            eventId=event_id,
            contactExtEventType="PURCHASE",
            date=when,
            description=sale[s["Details"]] or None,
            value=round(float(sale[s["Amount"]]), 2) if sale[s["Amount"]] else None,
            externalId=sid,
            detail1=STATUS[sale[s["Status"]]],
            detail2=sale[s["Sales State"]] or None,
            detail3=f"Product Line: {product_line}" if product_line else None,
        )
        assert event == expected

    # A second run moves nothing again: same counts, same crosswalk, same rejects.
    counts_after, moved_first, refused_first = sm_counts(sm), moved, refused
    again = await run_migration(sn_to_sm(sandbox, tmp_path))
    assert sm_counts(sm) == counts_after
    assert crosswalk(tmp_path) == moved_first
    assert rejects(tmp_path) == refused_first
    assert again.rows == summary.rows
    assert again.details["written"] == {"contacts": len(moving), "activities": 0, "sales": 0}
    assert again.details["carried_over"] == {
        "contacts": 0,
        "activities": len(activities),
        "sales": len(sales),
    }

    # Without the crosswalk, tasks are still not duplicated (their ids derive from the source
    # ids); PURCHASE events have no such key, so they are added again.
    (tmp_path / "crosswalk.parquet").unlink()
    await run_migration(sn_to_sm(sandbox, tmp_path))
    assert sm_counts(sm) == (counts_after[0], counts_after[1], counts_after[2] + len(sales))
    assert {k: v for k, v in crosswalk(tmp_path).items() if k[0] != "sales"} == {
        k: v for k, v in moved_first.items() if k[0] != "sales"
    }


# --- SALESmanago -> SalesNexus --------------------------------------------------------------------
def sm_sources(store: SalesManagoStore) -> dict[str, dict[Key, dict[str, Any]]]:
    """Source records by key, the way the SALESmanago transform names them."""
    tables: dict[str, dict[Key, dict[str, Any]]] = {"task": {}, "note": {}, "visit": {}, "sale": {}}
    for contact in store.contacts.values():
        cid = contact["id"]
        for task in contact["contactTasks"]:
            tables["task"][("activities", task["id"])] = {**task, "contact": cid}
        for kind, items in (("note", "contactNotes"), ("visit", "contactVisits")):
            for index, item in enumerate(contact[items]):
                tables[kind][("activities", f"{cid}:{kind}:{index}")] = {**item, "contact": cid}
        for event in contact["contactExtEvents"]:
            if event["contactExtEventType"] == "PURCHASE":
                tables["sale"][("sales", event["eventId"])] = {**event, "contact": cid}
    return tables


async def test_salesmanago_to_salesnexus(sandbox: Sandbox, tmp_path: Path) -> None:
    sm, sn = sandbox.salesmanago.store, sandbox.salesnexus.store
    f = {field.name: str(field.id) for field in sn.fields if field.table == "contact"}
    s = {field.name: str(field.id) for field in sn.fields if field.table == "sales"}
    n = {field.name: str(field.id) for field in sn.fields if field.table == "note"}
    email_key = f["Email"]
    before = {
        rec[email_key].lower(): (cid, dict(rec))
        for cid, rec in sn.contacts.items()
        if rec[email_key]
    }
    counts_before = sn_counts(sn)
    records = sm_sources(sm)
    emails = {cid: valid_email(c["email"]) for cid, c in sm.contacts.items()}
    assert all(emails.values())
    dropped = set()
    for c in sm.contacts.values():
        if c["birthdayYear"] is None and c["birthdayMonth"] is not None:
            dropped.add("birthday_month_day")
        dropped |= {k for k, flag in (("opted_out_phone", "optedOutPhone"),) if c[flag]}
        dropped |= {k for k in ("invalid", "deleted") if c[k]}

    summary = await run_migration(sm_to_sn(sandbox, tmp_path))

    sources = {("contacts", c) for c in sm.contacts}
    for table in records.values():
        sources |= set(table)
    migrated = sources - set(records["visit"])
    refused = check_accounting(tmp_path, summary, sources, migrated)
    assert summary.status == "ok"
    assert refused == {key: ("skipped", VISIT) for key in records["visit"]}
    assert summary.details["dropped_properties"] == sorted(dropped)
    assert summary.details["warnings"][0] == (
        f"{len(dropped)} contact properties have no SalesNexus contact field and are not "
        f"migrated: {', '.join(sorted(dropped))}"
    )

    moved = crosswalk(tmp_path)
    new_emails = set(emails.values()) - before.keys()
    assert sn_counts(sn) == (
        counts_before[0] + len(new_emails),
        counts_before[1] + len(records["task"]),
        counts_before[2] + len(records["note"]),
        counts_before[3] + len(records["sale"]),
    )
    target_of: dict[str, str] = {}
    for cid, contact in sm.contacts.items():
        found = sn.contact_by_email(emails[cid] or "")
        assert found is not None
        target_id, rec = found
        assert moved[("contacts", cid)] == (target_id, "contact")
        target_of[cid] = target_id
        old = before.get(emails[cid] or "", ("", dict.fromkeys(rec, "")))[1]

        def value(
            name: str, new: Any, rec: dict[str, str] = rec, old: dict[str, str] = old
        ) -> None:
            assert rec[f[name]] == (new if new not in (None, "") else old[f[name]]), name

        first, _, last = (contact["name"] or "").strip().partition(" ")
        value("Full Name", contact["name"])
        value("First Name", first)
        value("Last Name", last.strip())
        value("Company", contact["company"])
        value("Phone", contact["phone"])
        value("City", contact["address"]["city"])
        value("Street", contact["address"]["streetAddress"])
        value("Email", emails[cid])
        value("Tags", ", ".join(t["tag"] for t in contact["contactTags"]))
        props = {p["name"]: p["value"] for p in contact["properties"]}
        for source_name, field_name in PROPERTY_MAP.items():
            value(field_name, props.get(source_name))
        if contact["birthdayYear"] is not None:
            y, m, d = contact["birthdayYear"], contact["birthdayMonth"], contact["birthdayDay"]
            value("Birthday", f"{y:04d}-{m:02d}-{d:02d}")

    for key, task in records["task"].items():
        activity_id, kind = moved[key]
        assert kind == "activity"
        note = task["note"] or ""
        lines = [line.strip() for line in note.splitlines() if line.strip()]
        when = iso_seconds(task["date"])
        assert sn.activities[activity_id] == {
            "activity-id": activity_id,
            "schedule-with": target_of[task["contact"]],
            "schedule-for": "1",
            "regarding": lines[0] if lines else "",
            "details": note,
            "color": "",
            "start-time": when,
            "end-time": when,
            "type": "todo",
            "timeless": "false",
            "completed": "false",
            "result": "",
        }
    for key, note in records["note"].items():
        note_id, kind = moved[key]
        assert kind == "note"
        assert sn.notes[note_id] == {
            n["Details"]: note["note"],
            n["Contact ID"]: target_of[note["contact"]],
            n["Type"]: "General",
        }
    for key, event in records["sale"].items():
        sale_id, kind = moved[key]
        assert kind == "sale"
        sale = sn.sales[sale_id]
        day = (EPOCH + timedelta(milliseconds=event["date"])).date().isoformat()
        expected = {
            s["Contact ID"]: target_of[event["contact"]],
            s["Status"]: "1",
            s["Details"]: event["description"],
            s["Amount"]: f"{event['value']:.2f}",
            s["Close Date"]: day,
        }
        assert {k: v for k, v in sale.items() if v and k != s["Created"]} == {
            k: v for k, v in expected.items() if v
        }

    counts_after = sn_counts(sn)
    again = await run_migration(sm_to_sn(sandbox, tmp_path))
    assert sn_counts(sn) == counts_after
    assert crosswalk(tmp_path) == moved
    assert rejects(tmp_path) == refused
    assert again.details["written"] == {"contacts": len(sm.contacts), "activities": 0, "sales": 0}


# --- dry runs -------------------------------------------------------------------------------------
async def test_dry_run_salesnexus_to_salesmanago_writes_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sn = sandbox.salesnexus.store
    email_key = str(sn.field_id("contact", "Email"))
    contact_key = str(sn.field_id("sales", "Contact ID"))
    moving = {cid for cid, rec in sn.contacts.items() if valid_email(rec[email_key])}
    activities = sum(1 for a in sn.activities.values() if a["schedule-with"] in moving)
    sales = sum(1 for x in sn.sales.values() if x[contact_key] in moving)

    job = sn_to_sm(sandbox, tmp_path, pacing=PACED)
    summary = await run_migration(replace(job, dry_run=True))

    assert sandbox.salesmanago.stats.writes == 0
    assert sandbox.salesnexus.stats.writes == 0
    assert sandbox.salesmanago.stats.requests == 0  # nothing to read from a SALESmanago target
    assert list(tmp_path.iterdir()) == []
    requests = 1 + activities + sales  # one batchupsert, then one call per task and event
    assert summary.status == "dry-run"
    assert summary.rows == {"contacts": 0, "activities": 0, "sales": 0}
    assert summary.details["planned"] == {
        "contacts": len(moving),
        "activities": activities,
        "sales": sales,
    }
    assert summary.details["write_requests"] == requests
    assert summary.details["estimated_seconds"] == round(requests / 4.0, 1)


async def test_dry_run_salesmanago_to_salesnexus_writes_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    records = sm_sources(sandbox.salesmanago.store)
    calls = len(records["task"]) + len(records["note"]) + len(records["sale"])

    summary = await run_migration(sm_to_sn(sandbox, tmp_path, dry_run=True, pacing=PACED))

    assert sandbox.salesmanago.stats.writes == 0
    assert sandbox.salesnexus.stats.writes == 0
    assert sandbox.salesnexus.stats.calls == {"get-login-token": 1, "get-all-fields": 1}
    assert list(tmp_path.iterdir()) == []
    requests = 1 + math.ceil(calls / 25)  # import-contacts, then 25 calls per request
    assert summary.details["planned"] == {
        "contacts": len(sandbox.salesmanago.store.contacts),
        "activities": len(records["task"]) + len(records["note"]),
        "sales": len(records["sale"]),
    }
    assert summary.details["skipped"]["activities"] == len(records["visit"])
    assert summary.details["write_requests"] == requests
    assert summary.details["estimated_seconds"] == round(requests / 4.0, 1)


# --- refusals and resuming ------------------------------------------------------------------------
async def test_refused_contacts_are_rejected_with_the_crm_message_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    faulty = replace(SEEDED, faults=FaultConfig(row_failure=0.2, seed=7))
    async with Sandbox(faulty) as sandbox:
        sn, sm = sandbox.salesnexus.store, sandbox.salesmanago.store
        email_key = str(sn.field_id("contact", "Email"))
        contact_key = str(sn.field_id("sales", "Contact ID"))
        moving = {cid for cid, rec in sn.contacts.items() if valid_email(rec[email_key])}
        linked = {("activities", a): x["schedule-with"] for a, x in sn.activities.items()}
        linked |= {("sales", sid): x[contact_key] for sid, x in sn.sales.items()}

        first = await run_migration(sn_to_sm(sandbox, tmp_path))

        moved, refused = crosswalk(tmp_path), rejects(tmp_path)
        failed = {cid for cid in moving if ("contacts", cid) not in moved}
        assert 0 < len(failed) < len(moving)
        message = "Internal error while saving the contact"  # the emulator's failedContacts text
        for cid in failed:
            assert refused[("contacts", cid)] == ("failed", message)
        for key, cid in linked.items():
            if cid in failed:
                why = f"its contact {cid} was not migrated: the CRM refused it: {message}"
                assert refused[key] == ("rejected", why)
            else:
                assert (key in moved) == (cid in moving)
        assert first.details["failed"] == {"contacts": len(failed), "activities": 0, "sales": 0}

        sandbox.salesmanago.config = SEEDED  # the faults stop; the next run completes the job
        tasks_before = sm_counts(sm)[1]
        second = await run_migration(sn_to_sm(sandbox, tmp_path))

        complete = crosswalk(tmp_path)
        assert {k: v for k, v in complete.items() if k in moved} == moved
        assert set(complete) == {("contacts", c) for c in moving} | {
            key for key, cid in linked.items() if cid in moving
        }
        assert {k: v[0] for k, v in rejects(tmp_path).items()} == {
            **{("contacts", c): "rejected" for c in sn.contacts.keys() - moving},
            **{key: "rejected" for key, cid in linked.items() if cid not in moving},
        }
        resumed = {key for key, cid in linked.items() if cid in failed}
        assert sm_counts(sm)[1] == tasks_before + sum(1 for t, _ in resumed if t == "activities")
        assert second.details["written"] == {
            "contacts": len(moving),
            "activities": sum(1 for t, _ in resumed if t == "activities"),
            "sales": sum(1 for t, _ in resumed if t == "sales"),
        }
        assert second.status == "partial"  # the contacts without email remain
