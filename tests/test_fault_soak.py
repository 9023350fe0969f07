"""The fault soak as tests: every fault at once, then the exact final state.

Each test serves its emulators in-process over loopback with 5% 5xx answers, 1% dropped
connections, 1% truncated JSON, 1% per-row failures (and 1% failed calls inside SalesNexus
batches), a quota a little below the client's configured pace (so 429s come and the adaptive
pacer has to find the real quota) and SalesNexus login tokens that live a second and a half.
Retries are fast and the budget generous, so runs finish; should one stop all the same
(``RunInterrupted``), it is resumed until done.

Nothing is taken from the runs' own accounts: the outcome files, the Parquet datasets and the
crosswalk are compared with the emulators' stores, record by record. No timing is asserted.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from etl.clients import Pacing, RetryPolicy, SalesManagoConfig, SalesNexusConfig
from etl.pipeline.export import Crm, ExportJob, run_export
from etl.pipeline.imports import ImportJob, run_import
from etl.pipeline.migrate import MigrationJob, run_migration
from etl.pipeline.run import RunInterrupted, RunSummary
from etl.sandbox import (
    FaultConfig,
    QuotaConfig,
    RequestStats,
    SalesManagoEmulator,
    SalesNexusEmulator,
    SandboxConfig,
)
from etl.sandbox.salesmanago import ROW_FAILURE_MESSAGE
from etl.sandbox.salesmanago_store import SalesManagoStore
from etl.sandbox.salesnexus_store import SalesNexusStore
from etl.transform.migration import task_id
from tests.support import sm_config, sn_config

Job = TypeVar("Job")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The seed fixes the fault stream; which request draws which fault still depends on the order
# requests arrive in. With this one an import batch is usually dropped after it was saved.
FAULTS = FaultConfig(
    server_error=0.05, drop=0.01, truncate=0.01, row_failure=0.01, call_error=0.01, seed=5
)
TOKEN_TTL = 1.5  # seconds: the SalesNexus export outlives a few tokens
OVER_QUOTA = 1.15  # the client's configured pace over the account's real quota
# Fast retries. 429s spend attempts too, so the budget is generous; the Retry-After of a 429 (a
# second at least) is capped so that it pauses the account only briefly.
RETRY = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.2, max_retry_after=0.3)
MAX_RESUMES = 10
TABLES = ("contacts", "activities", "sales")

ROWS = 20_000
INVALID_EVERY = 3_001  # one line in so many is invalid: six of the 20k
EXPORT_CONTACTS = 20_000


def quota_and_pace(quota: float, burst: int = 1) -> tuple[QuotaConfig, Pacing]:
    """The account's quota (requests/s, with its burst) and a client pace a little above it.

    Short runs get no burst, so that their few requests meet the quota at all; the migration's
    hundreds of requests get a small one (a twentieth of a second), closer to a real account."""
    return (
        QuotaConfig(rate=quota, burst=burst),
        Pacing(rate=quota * OVER_QUOTA, burst=1, max_in_flight=8),
    )


def faulty(quota: QuotaConfig, **sizes: int) -> SandboxConfig:
    return SandboxConfig(faults=FAULTS, quota=quota, token_ttl=TOKEN_TTL, **sizes)


@dataclass(frozen=True)
class Finished:
    summary: RunSummary
    resumes: int


async def until_done(
    job: Job, run: Callable[[Job], Awaitable[RunSummary]], resumed: Callable[[Job, Path], Job]
) -> Finished:
    """Run ``job``; each time it stops (``RunInterrupted``), resume it, up to a bound."""
    resumes = 0
    while True:
        try:
            return Finished(await run(job), resumes)
        except RunInterrupted as stopped:
            resumes += 1
            assert resumes <= MAX_RESUMES, f"still interrupted after {MAX_RESUMES} resumes"
            job = resumed(job, stopped.run_dir)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def report(name: str, stats: RequestStats, finished: Finished, *extra: str) -> None:
    """What the soak went through (shown with ``pytest -s``)."""
    share = stats.rate_limited / stats.requests if stats.requests else 0.0
    print(
        f"\n{name}: {stats.requests} requests, {stats.rate_limited} answered 429 ({share:.1%}), "
        f"{stats.logins} logins, faults {dict(sorted(stats.faults.items()))}, "
        f"{finished.resumes} resumes",
        *extra,
        sep="; ",
    )


# --- the import --------------------------------------------------------------------------------
class WatchedSalesManago(SalesManagoEmulator):
    """The SALESmanago emulator unchanged, noting what reached the client: the e-mails of the
    per-row failures in every ``batchupsert`` answer delivered whole. A failure in an answer
    that was dropped or truncated never reached the client, which sent the batch again."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.delivered_row_failures: list[str] = []

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.middlewares.insert(0, self._watch)  # outermost: sees the answer as it leaves
        return app

    @web.middleware
    async def _watch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not request.path.endswith("/contact/batchupsert") or response.status != 200:
            return response  # 429, 5xx, or a dropped connection (499): nothing was answered
        assert isinstance(response, web.Response) and isinstance(response.body, bytes)
        try:
            payload = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return response  # truncated
        self.delivered_row_failures.extend(
            failed["email"]
            for failed in payload.get("failedContacts", [])
            if failed["message"] == ROW_FAILURE_MESSAGE
        )
        return response


def write_contacts_csv(path: Path) -> tuple[dict[int, str], set[int]]:
    """``ROWS`` records with unique e-mails, a few of them invalid. Returns the e-mail on every
    line and the invalid lines (the header is line 1)."""
    emails: dict[int, str] = {}
    invalid: set[int] = set()
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "Last Name", "Company", "City"])
        for i in range(ROWS):
            line = i + 2
            email = f"soak{i:05d}@fault-soak.example"
            if i % INVALID_EVERY == INVALID_EVERY - 1:
                email = ("", f"soak{i:05d}.fault-soak.example", f"soak{i:05d}@nowhere")[i % 3]
                invalid.add(line)
            emails[line] = email
            writer.writerow([email, f"Soak{i}", "Tester", f"Soak Co {i % 97}", "Kraków"])
    return emails, invalid


async def test_a_20k_row_import_into_salesmanago_accounts_for_every_row(tmp_path: Path) -> None:
    csv_path = tmp_path / "contacts.csv"
    emails, invalid = write_contacts_csv(csv_path)
    quota, pacing = quota_and_pace(10.0)
    out = tmp_path / "import"
    async with WatchedSalesManago(faulty(quota, contacts=0)) as sm:
        target = sm_config(sm, pacing=pacing, retry=RETRY)
        job = ImportJob("fault_soak_import", csv_path, "salesmanago", target, out)
        finished = await until_done(job, run_import, lambda j, _: replace(j, resume=True))
        store, stats = sm.store, sm.stats
        delivered_failures = Counter(sm.delivered_row_failures)

    # Every input line is in exactly one of the outcome files.
    success, rejects = read_csv(out / "success.csv"), read_csv(out / "rejects.csv")
    lines = Counter(int(r["line"]) for r in success + rejects)
    assert lines.keys() == emails.keys() and set(lines.values()) == {1}
    validation = {int(r["line"]) for r in rejects if r["stage"] == "validation"}
    assert len(invalid) == 6 and validation == invalid
    crm = [r for r in rejects if r["stage"] == "crm"]
    assert len(crm) + len(invalid) == len(rejects)  # no duplicates, nothing else refused
    assert all(r["reason"] == ROW_FAILURE_MESSAGE for r in crm)

    # The summary's sums hold and agree with the files.
    d = finished.summary.details
    assert d["input"] == ROWS == d["loaded"] + d["rejected"] + d["duplicates"]
    assert (d["loaded"], d["rejected"], d["duplicates"]) == (len(success), len(rejects), 0)

    # Every per-row failure the client was answered with is a crm reject: exactly those unless
    # a run stopped (its last answers may have arrived unrecorded, and were asked again).
    refused = Counter(emails[int(r["line"])] for r in crm)
    assert 0 < refused.total() <= stats.faults["row_failure"]
    if finished.resumes == 0:
        assert refused == delivered_failures
    else:
        assert refused.keys() <= delivered_failures.keys()

    # The store holds every loaded row once, under the id success.csv names. Besides them, only
    # rows refused in the answer that counted, saved by an earlier attempt whose answer was lost.
    stored = Counter(c["email"] for c in store.contacts.values())
    assert set(stored.values()) == {1}
    for row in success:
        assert row["email"] == emails[int(row["line"])]
        contact = store.get_by_email(row["email"])
        assert contact is not None and contact["id"] == row["id"]
    saved_anyway = stored.keys() - {r["email"] for r in success}
    assert saved_anyway <= refused.keys()
    assert len(stored) == len(success) + len(saved_anyway)

    assert stats.rate_limited > 0  # the quota was met
    report(
        "import",
        stats,
        finished,
        f"{len(crm)} crm rejects of {stats.faults['row_failure']} row failures drawn",
        f"{len(saved_anyway)} refused rows saved by an attempt whose answer was lost",
    )


# --- the exports -------------------------------------------------------------------------------
def sm_expected(store: SalesManagoStore) -> dict[str, Counter[str]]:
    """Every record id a SALESmanago export delivers, from the store (task, note and visit ids
    as the transform derives them)."""
    ids: dict[str, Counter[str]] = {table: Counter() for table in TABLES}
    for contact in store.contacts.values():
        cid = contact["id"]
        ids["contacts"][cid] += 1
        for i, task in enumerate(contact["contactTasks"]):
            ids["activities"][task["id"] or f"{cid}:task:{i}"] += 1
        for kind, key in (("note", "contactNotes"), ("visit", "contactVisits")):
            ids["activities"].update(f"{cid}:{kind}:{i}" for i in range(len(contact[key])))
        ids["sales"].update(
            event["eventId"]
            for event in contact["contactExtEvents"]
            if event["contactExtEventType"] == "PURCHASE"
        )
    return ids


def sn_expected(store: SalesNexusStore) -> dict[str, Counter[str]]:
    return {
        "contacts": Counter(store.contacts.keys()),
        "activities": Counter(store.activities.keys()),
        "sales": Counter(store.sales.keys()),
    }


def exported(out: Path, table: str, *columns: str) -> list[dict[str, Any]]:
    return ds.dataset(out / table, partitioning="hive").to_table(columns=list(columns)).to_pylist()


@pytest.mark.parametrize("crm", ["salesmanago", "salesnexus"])
async def test_a_20k_contact_export_to_parquet_holds_every_record_once(
    crm: Crm, tmp_path: Path
) -> None:
    quota, pacing = quota_and_pace(20.0)
    config = faulty(quota, contacts=EXPORT_CONTACTS, activities=2_000, sales=500)
    out = tmp_path / "export"
    emulator = SalesManagoEmulator(config) if crm == "salesmanago" else SalesNexusEmulator(config)
    async with emulator:
        connection: SalesManagoConfig | SalesNexusConfig
        if isinstance(emulator, SalesManagoEmulator):
            connection = sm_config(emulator, pacing=pacing, retry=RETRY)
            expected = sm_expected(emulator.store)
            emails = {c["id"]: c["email"] for c in emulator.store.contacts.values()}
            page_size = 500
        else:
            # Smaller pages, fewer calls a request: enough requests to meet the quota, and a run
            # long enough to outlive a few login tokens.
            connection = sn_config(emulator, pacing=pacing, retry=RETRY, calls_per_request=2)
            expected = sn_expected(emulator.store)
            email_field = str(emulator.store.field_id("contact", "Email"))
            emails = {i: c[email_field] for i, c in emulator.store.contacts.items()}
            page_size = 250
        job = ExportJob(f"fault_soak_{crm}", crm, connection, out, page_size=page_size)
        finished = await until_done(job, run_export, lambda j, d: replace(j, resume_from=d))
        stats = emulator.stats

    assert expected["contacts"].total() == EXPORT_CONTACTS
    for table in TABLES:
        got = Counter(r["source_id"] for r in exported(out, table, "source_id"))
        assert got == expected[table], table  # every record, each exactly once
        assert finished.summary.rows[table] == expected[table].total()
    contacts = exported(out, "contacts", "source_id", "email")
    assert {r["source_id"]: r["email"] for r in contacts} == {
        i: email or None for i, email in emails.items()
    }  # and each row is the record it says it is

    assert stats.rate_limited > 0  # the quota was met
    if crm == "salesnexus":
        assert stats.logins > 1  # tokens expired mid-run and the client logged in again
    report(f"export from {crm}", stats, finished)


# --- the migration -----------------------------------------------------------------------------
def epoch_ms(day: str, iso_time: str) -> int:
    """A SalesNexus ``YYYY-MM-DD`` date (midnight UTC), else an ISO time, as epoch ms."""
    if day:
        moment = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    else:
        moment = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


async def test_a_migration_from_salesnexus_to_salesmanago_writes_nothing_twice(
    tmp_path: Path,
) -> None:
    quota, pacing = quota_and_pace(60.0, burst=3)
    out = tmp_path / "migrate"
    async with (
        SalesNexusEmulator(faulty(quota, contacts=200, activities=300, sales=100)) as sn,
        SalesManagoEmulator(faulty(quota, contacts=0)) as sm,
    ):
        job = MigrationJob(
            pipeline="fault_soak_migrate",
            source_crm="salesnexus",
            source=sn_config(sn, pacing=pacing, retry=RETRY, calls_per_request=1),
            target_crm="salesmanago",
            target=sm_config(sm, pacing=pacing, retry=RETRY),
            out=out,
            page_size=50,
        )
        finished = await until_done(job, run_migration, lambda j, _: replace(j, resume=True))
        source, target = sn.store, sm.store
        sn_stats, sm_stats = sn.stats, sm.stats

    moved = pq.read_table(out / "crosswalk.parquet").to_pylist()
    refused = read_csv(out / "rejects.csv")
    # The crosswalk and the rejects cover every source record exactly once.
    sources = Counter(
        [("contacts", i) for i in source.contacts]
        + [("activities", i) for i in source.activities]
        + [("sales", i) for i in source.sales]
    )
    assert Counter((r["table"], r["source_id"]) for r in moved + refused) == sources
    migrated = Counter(r["table"] for r in moved)
    assert finished.summary.rows == {table: migrated[table] for table in TABLES}

    # Contacts: one per e-mail; each migrated one is where the crosswalk says; the others are
    # refused ones an attempt whose answer was lost had saved.
    email_field = str(source.field_id("contact", "Email"))
    source_email = {i: c[email_field].strip().lower() for i, c in source.contacts.items()}
    in_target = Counter(c["email"] for c in target.contacts.values())
    assert set(in_target.values()) == {1}
    contact_of: dict[str, str] = {}  # source contact id -> target contact id
    for row in moved:
        if row["table"] == "contacts":
            contact = target.get(row["target_id"])
            assert contact is not None and contact["email"] == source_email[row["source_id"]]
            contact_of[row["source_id"]] = row["target_id"]
    failed = {source_email[r["source_id"]] for r in refused if r["table"] == "contacts"}
    assert in_target.keys() - {source_email[i] for i in contact_of} <= failed

    # Tasks: one per migrated activity (its id derived from the source id) on the contact its
    # source contact became, dated at its start, and no other.
    tasks = Counter(
        (task["id"], contact["id"], task["date"])
        for contact in target.contacts.values()
        for task in contact["contactTasks"]
    )
    expected_tasks: Counter[tuple[str, str, int]] = Counter()
    for row in moved:
        if row["table"] == "activities":
            activity = source.activities[row["source_id"]]
            assert row["target_id"] == task_id("salesnexus", row["source_id"])
            start = activity["start-time"] or activity["end-time"]
            owner = contact_of[activity["schedule-with"]]
            expected_tasks[(row["target_id"], owner, epoch_ms("", start))] += 1
    assert tasks == expected_tasks

    # PURCHASE events: no event twice, by content; one per migrated sale, on its contact, with
    # the sale's id, amount and date. Any other is a sale whose answers were lost every time
    # (rejected, and the migration says to look it up).
    events = [
        (contact["id"], event)
        for contact in target.contacts.values()
        for event in contact["contactExtEvents"]
    ]
    contents = Counter(
        (owner, json.dumps({k: v for k, v in event.items() if k != "eventId"}, sort_keys=True))
        for owner, event in events
    )
    assert set(contents.values()) == {1}
    assert all(event["contactExtEventType"] == "PURCHASE" for _, event in events)
    field = {name: str(source.field_id("sales", name)) for name in ("Contact ID", "Amount")}
    field |= {name: str(source.field_id("sales", name)) for name in ("Close Date", "Created")}

    def content(sale_id: str) -> tuple[str | None, str, float | None, int]:
        sale = source.sales[sale_id]
        amount = sale[field["Amount"]]
        when = epoch_ms(sale[field["Close Date"]], sale[field["Created"]])
        owner = contact_of.get(sale[field["Contact ID"]])
        return owner, sale_id, round(float(amount), 2) if amount else None, when

    purchases = {
        event["eventId"]: (owner, event["externalId"], event["value"], event["date"])
        for owner, event in events
    }
    for row in moved:
        if row["table"] == "sales":
            assert purchases.pop(row["target_id"]) == content(row["source_id"])
    unsure = {r["source_id"] for r in refused if "answer was lost" in r["reason"]}
    assert {found[1] for found in purchases.values()} <= unsure

    assert sm_stats.rate_limited > 0  # the quota was met
    statuses = Counter(f"{r['table']} {r['status']}" for r in refused)
    report("migration, SalesNexus side", sn_stats, finished)
    report(
        "migration, SALESmanago side",
        sm_stats,
        finished,
        f"adopted after a lost answer {finished.summary.details['adopted']}",
        f"rejects {dict(sorted(statuses.items()))}",
    )
