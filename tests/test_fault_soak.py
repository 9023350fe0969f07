"""The fault soak as tests: every fault at once, then the exact final state.

Each test serves its emulators in-process over loopback with 5% 5xx answers, 1% dropped
connections, 1% truncated JSON, 1% per-row failures (and 1% failed calls inside SalesNexus
batches), a quota a little below the client's configured pace (so 429s come and the adaptive
pacer has to find the real quota) and SalesNexus login tokens that live a second and a half.
Retries are fast and the budget generous, so the runs finish; should one stop anyway
(``RunInterrupted``), it is resumed until done.

Nothing is taken from the runs' own accounts: the outcome files and the Parquet datasets are
compared with the emulators' stores, record by record.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from etl.clients import Pacing, RetryPolicy
from etl.pipeline.export import ExportJob, run_export
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

J = TypeVar("J")

FAULTS = FaultConfig(
    server_error=0.05, drop=0.01, truncate=0.01, row_failure=0.01, call_error=0.01, seed=2024
)
TOKEN_TTL = 1.5  # seconds: every SalesNexus run below outlives a few tokens
OVER_QUOTA = 1.15  # the client's configured pace over the account's real quota
# Fast retries; 429s count as attempts too, so the budget is generous. Retry-After (at least a
# second) is capped so a 429 pauses the account briefly.
RETRY = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.2, max_retry_after=0.3)
MAX_RESUMES = 10

ROWS = 20_000
INVALID_EVERY = 3_001  # an invalid row every so many lines: a few of the 20k
EXPORT_CONTACTS = 20_000
TABLES = ("contacts", "activities", "sales")


def quota_and_pace(quota: float) -> tuple[QuotaConfig, Pacing]:
    """The account's quota (no burst) and a client pace a little above it."""
    return (
        QuotaConfig(rate=quota, burst=1),
        Pacing(rate=quota * OVER_QUOTA, burst=1, max_in_flight=8),
    )


def sandbox_config(quota: QuotaConfig, **sizes: int) -> SandboxConfig:
    return SandboxConfig(faults=FAULTS, quota=quota, token_ttl=TOKEN_TTL, **sizes)


@dataclass
class Finished:
    summary: RunSummary
    resumes: int


async def until_done(
    job: J, run: Callable[[J], Awaitable[RunSummary]], resumed: Callable[[J, Path], J]
) -> Finished:
    """Run ``job``; every time it stops (``RunInterrupted``) resume it, up to a bound."""
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


def assert_rate_limited(stats: RequestStats) -> None:
    """The quota was hit: some requests got 429 and were sent again."""
    assert stats.rate_limited > 0


# --- the import -----------------------------------------------------------------------------------
class WatchedSalesManago(SalesManagoEmulator):
    """The SALESmanago emulator as it is, plus what reached the client: the e-mails of the
    per-row failures in every ``batchupsert`` answer that was delivered whole (not dropped, not
    truncated). Failures in lost answers were never seen by the client; the batch was sent again.
    """

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.delivered_row_failures: list[str] = []

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.middlewares.insert(0, self._watch)  # outermost: sees the final answer
        return app

    @web.middleware
    async def _watch(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if not request.path.endswith("/contact/batchupsert") or response.status != 200:
            return response
        try:
            payload = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return response  # truncated: the client retries the batch
        self.delivered_row_failures.extend(
            failed["email"]
            for failed in payload.get("failedContacts", [])
            if failed["message"] == ROW_FAILURE_MESSAGE
        )
        return response


def write_contacts_csv(path: Path) -> tuple[dict[int, str], set[int]]:
    """``ROWS`` records with unique e-mails, a few of them invalid. Returns the e-mail of every
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


async def test_a_20k_row_import_into_salesmanago_ends_exact(tmp_path: Path) -> None:
    csv_path = tmp_path / "contacts.csv"
    emails, invalid = write_contacts_csv(csv_path)
    quota, pacing = quota_and_pace(10.0)
    out = tmp_path / "import"
    async with WatchedSalesManago(sandbox_config(quota, contacts=0)) as sm:
        job = ImportJob(
            "fault_soak_import",
            csv_path,
            "salesmanago",
            sm_config(sm, pacing=pacing, retry=RETRY),
            out,
        )
        done = await until_done(job, run_import, lambda j, _: replace(j, resume=True))
        store, stats = sm.store, sm.stats
        delivered_failures = list(sm.delivered_row_failures)

    # Every input line is in exactly one of the outcome files.
    success, rejects = read_csv(out / "success.csv"), read_csv(out / "rejects.csv")
    lines = Counter(int(r["line"]) for r in success + rejects)
    assert sorted(lines) == sorted(emails) and set(lines.values()) == {1}
    stages = {int(r["line"]): r["stage"] for r in rejects}
    assert {line for line, stage in stages.items() if stage == "validation"} == invalid
    crm = [r for r in rejects if r["stage"] == "crm"]
    assert len(crm) + len(invalid) == len(rejects)  # no duplicates, nothing else refused
    assert all(r["reason"] == ROW_FAILURE_MESSAGE for r in crm)

    # The summary's sums hold and agree with the files.
    d = done.summary.details
    assert d["input"] == ROWS == d["loaded"] + d["rejected"] + d["duplicates"]
    assert (d["loaded"], d["rejected"], d["duplicates"]) == (len(success), len(rejects), 0)

    # Every per-row failure the CRM answered with is a crm reject (failures in answers that
    # were lost never reached the client: those batches were sent again).
    crm_emails = Counter(emails[int(r["line"])] for r in crm)
    assert 0 < len(crm) <= stats.faults["row_failure"]
    if done.resumes == 0:  # a stopped run may leave a delivered answer unrecorded
        assert crm_emails == Counter(delivered_failures)
    else:
        assert crm_emails.keys() <= set(delivered_failures)

    # The store holds every loaded row once, under the id success.csv names; besides them only
    # rows refused in the answer that counted, after an earlier attempt whose answer was lost
    # had saved them.
    by_email = Counter(c["email"] for c in store.contacts.values())
    assert set(by_email.values()) == {1}
    for row in success:
        assert row["email"] == emails[int(row["line"])]
        stored = store.get_by_email(row["email"])
        assert stored is not None and stored["id"] == row["id"]
    assert by_email.keys() - {r["email"] for r in success} <= crm_emails.keys()
    assert_rate_limited(stats)
    print(
        f"import: {stats.requests} requests, {stats.rate_limited} 429s, faults "
        f"{dict(stats.faults)}, {len(crm)} crm rejects, "
        f"{len(by_email) - len(success)} refused rows stored by a lost attempt, "
        f"{done.resumes} resumes"
    )


# --- the exports ----------------------------------------------------------------------------------
def sm_expected(store: SalesManagoStore) -> dict[str, Counter[str]]:
    """Every record id the export must deliver, from the store (task, note and visit ids as the
    contract's transform derives them)."""
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


def exported(out: Path, table: str, columns: list[str]) -> list[dict[str, Any]]:
    return ds.dataset(out / table, partitioning="hive").to_table(columns=columns).to_pylist()


@pytest.mark.parametrize("crm", ["salesmanago", "salesnexus"])
async def test_a_20k_contact_export_to_parquet_holds_every_record_once(
    crm: str, tmp_path: Path
) -> None:
    quota, pacing = quota_and_pace(20.0)
    config = sandbox_config(quota, contacts=EXPORT_CONTACTS, activities=2_000, sales=500)
    out = tmp_path / "export"
    emulator: SalesManagoEmulator | SalesNexusEmulator
    if crm == "salesmanago":
        emulator = SalesManagoEmulator(config)
    else:
        emulator = SalesNexusEmulator(config)
    async with emulator:
        if isinstance(emulator, SalesManagoEmulator):
            connection = sm_config(emulator, pacing=pacing, retry=RETRY)
            expected = sm_expected(emulator.store)
            emails = {c["id"]: c["email"] for c in emulator.store.contacts.values()}
            page_size = 500
        else:
            connection = sn_config(emulator, pacing=pacing, retry=RETRY, calls_per_request=2)
            expected = sn_expected(emulator.store)
            email_field = str(emulator.store.field_id("contact", "Email"))
            emails = {i: c[email_field] for i, c in emulator.store.contacts.items()}
            page_size = 250
        job = ExportJob(f"fault_soak_{crm}", crm, connection, out, page_size=page_size)  # type: ignore[arg-type]
        done = await until_done(job, run_export, lambda j, run_dir: replace(j, resume_from=run_dir))
        stats = emulator.stats

    assert sum(expected["contacts"].values()) == EXPORT_CONTACTS
    for table in TABLES:
        got = Counter(r["source_id"] for r in exported(out, table, ["source_id"]))
        assert got == expected[table], table  # every record, each exactly once
        assert done.summary.rows[table] == sum(expected[table].values())
    contacts = exported(out, "contacts", ["source_id", "email"])
    assert {r["source_id"]: r["email"] for r in contacts} == {
        i: e or None for i, e in emails.items()
    }  # and each is the record it says it is
    assert_rate_limited(stats)
    if crm == "salesnexus":
        assert stats.logins > 1  # tokens expired mid-run and the client logged in again
    print(
        f"export {crm}: {stats.requests} requests, {stats.rate_limited} 429s, logins "
        f"{stats.logins}, faults {dict(stats.faults)}, {done.resumes} resumes"
    )


# --- the migration ---------------------------------------------------------------------------------
async def test_a_migration_from_salesnexus_to_salesmanago_writes_nothing_twice(
    tmp_path: Path,
) -> None:
    quota, pacing = quota_and_pace(60.0)
    out = tmp_path / "migrate"
    source_config = sandbox_config(quota, contacts=300, activities=500, sales=150)
    async with (
        SalesNexusEmulator(source_config) as sn,
        SalesManagoEmulator(sandbox_config(quota, contacts=0)) as sm,
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
        done = await until_done(job, run_migration, lambda j, _: replace(j, resume=True))
        source, target = sn.store, sm.store
        sn_stats, sm_stats = sn.stats, sm.stats

    moved = pq.read_table(out / "crosswalk.parquet").to_pylist()
    refused = read_csv(out / "rejects.csv")
    # The crosswalk and the rejects cover every source record exactly once.
    keys = Counter((r["table"], r["source_id"]) for r in moved + refused)
    sources = Counter(
        [("contacts", i) for i in source.contacts]
        + [("activities", i) for i in source.activities]
        + [("sales", i) for i in source.sales]
    )
    assert keys == sources
    assert done.summary.rows == dict(Counter(r["table"] for r in moved))

    email_field = str(source.field_id("contact", "Email"))
    source_email = {i: c[email_field].strip().lower() for i, c in source.contacts.items()}
    # Contacts: one per e-mail in the target, each migrated one where the crosswalk says.
    by_email = Counter(c["email"] for c in target.contacts.values())
    assert set(by_email.values()) == {1}
    contact_of: dict[str, str] = {}  # source contact id -> target contact id
    for row in moved:
        if row["table"] == "contacts":
            stored = target.get(row["target_id"])
            assert stored is not None and stored["email"] == source_email[row["source_id"]]
            contact_of[row["source_id"]] = row["target_id"]
    failed_contacts = {r["source_id"] for r in refused if r["table"] == "contacts"}
    extra = by_email.keys() - {source_email[i] for i in contact_of}
    assert extra <= {source_email[i] for i in failed_contacts}  # saved by a lost attempt only

    # Tasks: exactly one per migrated activity (its id derived from the source id), on the
    # contact its source contact became, and no other.
    tasks = Counter(
        (task["id"], contact["id"])
        for contact in target.contacts.values()
        for task in contact["contactTasks"]
    )
    expected_tasks: Counter[tuple[str, str]] = Counter()
    for row in moved:
        if row["table"] == "activities":
            assert row["target_id"] == task_id("salesnexus", row["source_id"])
            owner = contact_of[source.activities[row["source_id"]]["schedule-with"]]
            expected_tasks[(row["target_id"], owner)] += 1
    assert tasks == expected_tasks

    # PURCHASE events: exactly one per migrated sale, by content, on its contact.
    contact_key = str(source.field_id("sales", "Contact ID"))
    amount_key = str(source.field_id("sales", "Amount"))
    purchases = Counter(
        (contact["id"], event["externalId"], event["value"])
        for contact in target.contacts.values()
        for event in contact["contactExtEvents"]
        if event["contactExtEventType"] == "PURCHASE"
    )
    migrated_sales = [r["source_id"] for r in moved if r["table"] == "sales"]
    lost = {
        r["source_id"]
        for r in refused
        if r["table"] == "sales" and "answer was lost" in r["reason"]
    }

    def content(sale_id: str) -> tuple[str | None, str, float | None]:
        sale = source.sales[sale_id]
        amount = sale.get(amount_key) or None
        value = round(float(amount), 2) if amount else None
        return contact_of.get(sale[contact_key]), sale_id, value

    assert all(n == 1 for n in purchases.values())  # no PURCHASE event twice
    expected_purchases = Counter(content(s) for s in migrated_sales)
    assert expected_purchases.keys() <= purchases.keys()
    assert purchases.keys() - expected_purchases.keys() <= {content(s) for s in lost}
    events = {
        event["eventId"]: (contact["id"], event["externalId"])
        for contact in target.contacts.values()
        for event in contact["contactExtEvents"]
    }
    for row in moved:
        if row["table"] == "sales":
            assert events[row["target_id"]] == (contact_of[source.sales[row["source_id"]][contact_key]], row["source_id"])

    assert_rate_limited(sm_stats)
    print(
        f"migrate: sm {sm_stats.requests} requests, {sm_stats.rate_limited} 429s, faults "
        f"{dict(sm_stats.faults)}; sn {sn_stats.requests} requests, logins {sn_stats.logins}, "
        f"faults {dict(sn_stats.faults)}; {done.resumes} resumes; adopted "
        f"{done.summary.details['adopted']}; rejects "
        f"{Counter((r['table'], r['status']) for r in refused)}"
    )
