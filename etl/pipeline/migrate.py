"""The migration: one CRM's contacts, activities and sales into the other, and a crosswalk back.

::

    extract (the export's pump, into memory) -> contacts (upsert by email, all of them first)
        -> activities and sales (linked to the new contact ids) -> crosswalk.parquet, rejects.csv

Every source record ends in ``<out>/crosswalk.parquet`` (table, source_id, target_id,
target_kind) or in ``<out>/rejects.csv`` (table, source_id, status, reason), where status is
``rejected`` (could not be mapped, e.g. no email or its contact did not move), ``failed`` (the CRM
refused it, with the CRM's message) or ``skipped`` (no counterpart in the target).

Re-runs create no duplicates: contacts are upserted by email again (same ids); activities and sales
already in the crosswalk are skipped and their rows carried over; SALESmanago tasks are also
idempotent on their own, their ids being derived from the source ids. If a run stops half way, the
crosswalk of what was written so far is saved, so the next run resumes.

The mapping rules live in :mod:`etl.transform.migration`; the writes in ``etl.load``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.clients import (
    AuthenticationError,
    CRMError,
    RetryBudgetExhausted,
    SalesManagoClient,
    SalesManagoConfig,
    SalesNexusClient,
    SalesNexusConfig,
)
from etl.extract import SalesManagoSource, SalesNexusSource
from etl.load import (
    RunManifest,
    TableManifest,
    TableSink,
    WrittenFile,
    manifest_counts_match,
    write_manifest,
)
from etl.load.atomic import atomic_write_bytes
from etl.load.crm_contacts import (
    SALESNEXUS_FIELD_NAMES,
    ContactWriter,
    RowResult,
    SalesManagoContactWriter,
    SalesNexusContactWriter,
)
from etl.load.crm_records import RecordWriter, SalesManagoRecordWriter, SalesNexusRecordWriter
from etl.load.crosswalk import (
    CROSSWALK_NAME,
    CROSSWALK_SCHEMA,
    REJECTS_NAME,
    REJECTS_SCHEMA,
    CrosswalkOrigin,
    CrosswalkRow,
    read_crosswalk,
    write_crosswalk,
    write_rejects,
)
from etl.load.memory_sink import MemorySink
from etl.pipeline.export import pump_tables, salesmanago_transform, salesnexus_transform
from etl.pipeline.run import RunProgress, RunSummary, new_run_id
from etl.transform import SCHEMAS, TABLES, FieldCatalog
from etl.transform.migration import (
    CONTACT_TEXT_COLUMNS,
    PlannedWrite,
    Reject,
    SalesFields,
    TargetContact,
    chunks,
    contact_load_frame,
    full_names_only,
    plan_activities,
    plan_sales,
    property_names,
    without_properties,
)

log = logging.getLogger("etl.pipeline")

Crm = Literal["salesmanago", "salesnexus"]
Client = SalesManagoClient | SalesNexusClient

CONTACT_CHUNK_ROWS = 1000  # one batchupsert / import-contacts call
RECORD_WAVE = 250  # activity and sale calls in flight together (a multiple of 25)
# Errors after which sending more only fails the same way: the run stops (and can be resumed).
FATAL_ERRORS = (AuthenticationError, RetryBudgetExhausted)
SUMMARY_NAME = "summary.json"
_CRM_OF_CONFIG: dict[type, Crm] = {
    SalesManagoConfig: "salesmanago",
    SalesNexusConfig: "salesnexus",
}


class MigrationError(RuntimeError):
    """The migration could not be planned or its output does not add up."""


@dataclass(frozen=True)
class MigrationJob:
    """One migration run. ``property_map`` renames contact properties on the way (source name ->
    target name, e.g. ``{"custom.lead_source": "Lead Source"}`` for a SalesNexus field)."""

    pipeline: str
    source_crm: Crm
    source: SalesManagoConfig | SalesNexusConfig
    target_crm: Crm
    target: SalesManagoConfig | SalesNexusConfig
    out: Path
    tables: Sequence[str] = TABLES
    dry_run: bool = False
    run_id: str = field(default_factory=new_run_id)
    property_map: Mapping[str, str] = field(default_factory=dict)
    page_size: int = 1000

    def __post_init__(self) -> None:
        unknown = [t for t in self.tables if t not in SCHEMAS]
        if unknown or not self.tables:
            raise ValueError(f"tables must be some of {list(TABLES)}, got {list(self.tables)}")
        for role, crm, config in (
            ("source", self.source_crm, self.source),
            ("target", self.target_crm, self.target),
        ):
            if _CRM_OF_CONFIG.get(type(config)) != crm:
                raise ValueError(f"the {role} connection is not a {crm} connection")
        if self.source_crm == self.target_crm:
            raise ValueError("a migration moves records between SALESmanago and SalesNexus")


def account_name(config: SalesManagoConfig | SalesNexusConfig) -> str:
    """A non-secret name of the account a connection reaches."""
    if isinstance(config, SalesManagoConfig):
        return f"{config.client_id}/{config.owner}"
    return config.email or "permanent token"


def _client(config: SalesManagoConfig | SalesNexusConfig) -> Client:
    if isinstance(config, SalesManagoConfig):
        return SalesManagoClient(config)
    return SalesNexusClient(config)


@dataclass(frozen=True)
class _Target:
    contacts: ContactWriter
    records: RecordWriter
    catalog: FieldCatalog | None
    contact_wave: int  # contact chunks of 1000 sent together


async def _open_target(client: Client) -> _Target:
    if isinstance(client, SalesManagoClient):
        wave = max(1, client.config.pacing.max_in_flight)
        return _Target(
            SalesManagoContactWriter(client), SalesManagoRecordWriter(client), None, wave
        )
    catalog = FieldCatalog.from_api(await client.get_all_fields())
    return _Target(
        SalesNexusContactWriter(client, catalog),
        SalesNexusRecordWriter(client),
        catalog,
        client.config.calls_per_request,
    )


async def _extract(job: MigrationJob, client: Client, progress: RunProgress) -> dict[str, pa.Table]:
    """The source's canonical tables, through the export's extract -> transform pump.

    Contacts are always read: activities and sales are linked through them.
    """
    memory = {t: MemorySink(t, SCHEMAS[t]) for t in TABLES if t == "contacts" or t in job.tables}
    sinks: dict[str, TableSink] = dict(memory)
    reading = RunProgress(job.pipeline)  # the run's own progress counts migrated rows
    if isinstance(client, SalesManagoClient):
        sm_source = SalesManagoSource(client, page_size=job.page_size)
        transform_sm = salesmanago_transform(list(sinks))
        await pump_tables(sm_source.batches, ["contacts"], transform_sm, sinks, reading)
    else:
        catalog = FieldCatalog.from_api(await client.get_all_fields())
        sn_source = SalesNexusSource(client, page_size=job.page_size)
        transform = salesnexus_transform(catalog)
        await pump_tables(sn_source.batches, list(sinks), transform, sinks, reading)
    progress.pages += reading.pages
    return {name: sink.table() for name, sink in memory.items()}


class _Migration:
    """The state of one run: the crosswalk so far, the rejects and the counters."""

    def __init__(
        self, job: MigrationJob, previous: list[CrosswalkRow], progress: RunProgress
    ) -> None:
        self.job = job
        self.progress = progress
        self.crosswalk: dict[tuple[str, str], CrosswalkRow] = {
            (r.table, r.source_id): r for r in previous
        }
        self.previous = set(self.crosswalk)
        self.rejects: list[Reject] = []
        self.warnings: list[str] = []
        self.dropped_properties: list[str] = []
        self.extracted: Counter[str] = Counter()
        self.planned: Counter[str] = Counter()
        self.written: set[tuple[str, str]] = set()
        self.sent: set[tuple[str, str]] = set()  # planned to be written (or dry-run planned)
        self.write_requests = 0
        self.writing = False  # a write may have reached the target: save on failure
        self.order: dict[str, list[str]] = {}
        self.fatal: CRMError | None = None

    # -- bookkeeping ----------------------------------------------------------------------------
    def warn(self, message: str) -> None:
        log.warning("%s: %s", self.job.pipeline, message)
        self.warnings.append(message)

    def migrated(self, table: str, source_id: str, target_id: str, kind: str) -> None:
        self.crosswalk[(table, source_id)] = CrosswalkRow(table, source_id, target_id, kind)
        self.written.add((table, source_id))
        self.progress.rows[table] += 1

    def failed(self, table: str, source_id: str, error: CRMError) -> None:
        self.rejects.append(Reject(table, source_id, "failed", str(error) or type(error).__name__))
        if isinstance(error, FATAL_ERRORS) and self.fatal is None:
            self.fatal = error

    def raise_fatal(self) -> None:
        if self.fatal is not None:
            raise self.fatal

    # -- contacts ----------------------------------------------------------------------------
    async def contacts(
        self, contacts: pa.Table, target: _Target
    ) -> tuple[dict[str, TargetContact], dict[str, str]]:
        """Upsert the contacts; returns the target contact of every linkable source contact and
        the reason for every contact that is not linkable."""
        job = self.job
        self.order["contacts"] = contacts.column("source_id").to_pylist()
        frame, rejects = await asyncio.to_thread(contact_load_frame, contacts, job.property_map)
        emails = dict(zip(frame["source_id"].tolist(), frame["email"].tolist(), strict=True))
        problems = {r.source_id: r.reason for r in rejects}
        if "contacts" in job.tables:
            self.rejects.extend(rejects)
            if target.catalog is not None:
                frame = self._fit_salesnexus(frame, target)
            else:
                frame = full_names_only(frame)
            self.planned["contacts"] = len(frame)
            self.sent.update(("contacts", source_id) for source_id in frame["source_id"])
            failures = await self._write_contacts(frame, target)
            problems.update(failures)
        else:
            for source_id in emails:
                problems[source_id] = (
                    "contacts are not part of this run and no earlier run moved it"
                )
        linked = {
            row.source_id: TargetContact(row.target_id, emails.get(row.source_id))
            for (table, _), row in self.crosswalk.items()
            if table == "contacts"
        }
        if job.dry_run and "contacts" in job.tables:
            for source_id, email in emails.items():
                linked.setdefault(source_id, TargetContact(f"(new: {source_id})", email))
        return linked, {k: v for k, v in problems.items() if k not in linked}

    def _fit_salesnexus(self, frame: pd.DataFrame, target: _Target) -> pd.DataFrame:
        """Drop properties SalesNexus has no contact field for, with one warning naming them."""
        assert target.catalog is not None
        fields = {f.name.casefold() for f in target.catalog.fields_for("contact")}
        standard = {name.casefold() for name in SALESNEXUS_FIELD_NAMES.values()}
        dropped = [
            name
            for name in property_names(frame)
            if name.casefold() not in fields or name.casefold() in standard
        ]
        if dropped:
            self.dropped_properties = dropped
            self.warn(
                f"{len(dropped)} contact propert{'y has' if len(dropped) == 1 else 'ies have'} "
                f"no SalesNexus contact field and {'is' if len(dropped) == 1 else 'are'} not "
                f"migrated: {', '.join(dropped)}"
            )
            frame = without_properties(frame, dropped)
        used = [c for c in (*CONTACT_TEXT_COLUMNS, "birthday") if frame[c].notna().any()]
        if frame["tags"].map(bool).any():
            used.append("tags")
        unmapped = [c for c in used if c not in SALESNEXUS_FIELD_NAMES]
        if unmapped:
            self.warn(f"SalesNexus has no contact field for {', '.join(unmapped)}: not migrated")
        for problem in target.contacts.check(used, []):
            self.warn(f"{problem}: not migrated")
        return frame

    async def _write_contacts(self, frame: pd.DataFrame, target: _Target) -> dict[str, str]:
        """Upsert in chunks of 1000, a wave of chunks at a time; returns failures' reasons."""
        sources = dict(zip(frame["row"].tolist(), frame["source_id"].tolist(), strict=True))
        pieces = [
            frame.iloc[start : start + CONTACT_CHUNK_ROWS]
            for start in range(0, len(frame), CONTACT_CHUNK_ROWS)
        ]
        failures: dict[str, str] = {}
        for wave in chunks(pieces, target.contact_wave):
            self.write_requests += target.contacts.requests_for(sum(len(p) for p in wave))
            if self.job.dry_run:
                continue
            self.writing = True
            answers = await asyncio.gather(
                *(target.contacts.write(piece) for piece in wave), return_exceptions=True
            )
            unexpected: BaseException | None = None
            for piece, answer in zip(wave, answers, strict=True):
                if isinstance(answer, CRMError):
                    for source_id in piece["source_id"].tolist():
                        self.failed("contacts", source_id, answer)
                        failures[source_id] = f"the CRM refused it: {answer}"
                elif isinstance(answer, BaseException):
                    unexpected = unexpected or answer
                else:
                    failures.update(self._contact_results(answer, sources))
            if unexpected is not None:
                raise unexpected
            self.raise_fatal()
        return failures

    def _contact_results(self, results: list[RowResult], sources: dict[int, str]) -> dict[str, str]:
        failures: dict[str, str] = {}
        for result in results:
            source_id = sources[result.row]
            if result.ok and result.id:
                self.migrated("contacts", source_id, result.id, "contact")
                continue
            reason = result.message or f"the CRM answered {result.status!r} without an id"
            self.rejects.append(Reject("contacts", source_id, "failed", reason))
            failures[source_id] = f"the CRM refused it: {reason}"
        return failures

    # -- activities and sales --------------------------------------------------------------------
    async def records(
        self,
        tables: dict[str, pa.Table],
        linked: dict[str, TargetContact],
        problems: dict[str, str],
        target: _Target,
    ) -> None:
        job = self.job
        writes: list[PlannedWrite] = []
        for table in ("activities", "sales"):
            if table not in job.tables:
                continue
            data = tables[table]
            self.order[table] = data.column("source_id").to_pylist()
            done = pa.array([sid for (t, sid) in self.crosswalk if t == table], pa.string())
            pending = data.filter(pc.invert(pc.is_in(data["source_id"], value_set=done)))
            if table == "activities":
                plan = await asyncio.to_thread(
                    plan_activities,
                    pending,
                    source_crm=job.source_crm,
                    target_crm=job.target_crm,
                    contacts=linked,
                    problems=problems,
                )
            else:
                fields = SalesFields.from_catalog(target.catalog) if target.catalog else None
                plan = await asyncio.to_thread(
                    plan_sales,
                    pending,
                    target_crm=job.target_crm,
                    contacts=linked,
                    problems=problems,
                    fields=fields,
                )
            self.rejects.extend(plan.rejects)
            for message in plan.warnings:
                self.warn(message)
            self.planned[table] = len(plan.writes)
            self.sent.update((w.table, w.source_id) for w in plan.writes)
            writes.extend(plan.writes)
        for wave in chunks(writes, RECORD_WAVE):
            self.write_requests += target.records.requests_for(len(wave))
            if job.dry_run:
                continue
            self.writing = True
            await asyncio.gather(*(self._write_record(target.records, w) for w in wave))
            self.raise_fatal()

    async def _write_record(self, writer: RecordWriter, record: PlannedWrite) -> None:
        try:
            target_id = await writer.write(record)
        except CRMError as exc:
            self.failed(record.table, record.source_id, exc)
            return
        if not target_id:
            reason = "the CRM answered without an id for the new record"
            self.rejects.append(Reject(record.table, record.source_id, "failed", reason))
            return
        self.migrated(record.table, record.source_id, target_id, record.kind)

    # -- results -------------------------------------------------------------------------------
    def _positions(self) -> dict[tuple[str, str], int]:
        return {
            (table, source_id): position
            for table, ids in self.order.items()
            for position, source_id in enumerate(ids)
        }

    def crosswalk_rows(self) -> list[CrosswalkRow]:
        """Source order within each table (contacts, activities, sales); rows whose source
        record is gone keep their earlier order after the others."""
        positions = self._positions()
        keys = list(self.crosswalk)
        rank = {key: index for index, key in enumerate(keys)}
        tables = {name: index for index, name in enumerate(TABLES)}
        keys.sort(
            key=lambda k: (
                tables.get(k[0], len(tables)),
                k not in positions,
                positions.get(k, rank[k]),
            )
        )
        return [self.crosswalk[k] for k in keys]

    def sorted_rejects(self) -> list[Reject]:
        positions = self._positions()
        tables = {name: index for index, name in enumerate(TABLES)}
        return sorted(
            self.rejects,
            key=lambda r: (
                tables.get(r.table, len(tables)),
                positions.get((r.table, r.source_id), len(positions)),
                r.source_id,
            ),
        )

    def carried(self) -> Counter[str]:
        """Crosswalk rows kept from earlier runs for records this run did not send."""
        return Counter(table for table, _ in self.previous - self.sent)

    def save(self, origin: CrosswalkOrigin) -> tuple[WrittenFile, WrittenFile]:
        out = self.job.out
        return (
            write_crosswalk(out, self.crosswalk_rows(), origin),
            write_rejects(out, self.sorted_rejects()),
        )


async def run_migration(job: MigrationJob, progress: RunProgress | None = None) -> RunSummary:
    """Migrate ``job.tables`` from the source CRM to the target CRM; see the module docstring."""
    progress = progress or RunProgress(job.pipeline)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    origin = CrosswalkOrigin(
        job.source_crm, account_name(job.source), job.target_crm, account_name(job.target)
    )
    previous = await asyncio.to_thread(read_crosswalk, job.out / CROSSWALK_NAME, origin)
    run = _Migration(job, previous, progress)
    async with AsyncExitStack() as stack:
        source = await stack.enter_async_context(_client(job.source))
        target_client = await stack.enter_async_context(_client(job.target))
        progress.transports.extend([source.stats, target_client.stats])
        tables = await _extract(job, source, progress)
        run.extracted.update({name: table.num_rows for name, table in tables.items()})
        log.info(
            "%s: read %s from %s",
            job.pipeline,
            ", ".join(f"{n:,} {t}" for t, n in run.extracted.items()),
            job.source_crm,
        )
        target = await _open_target(target_client)
        try:
            linked, problems = await run.contacts(tables["contacts"], target)
            await run.records(tables, linked, problems, target)
        except BaseException:
            if run.writing:  # keep what reached the target, so a re-run resumes
                try:
                    run.save(origin)
                except Exception:
                    log.exception("%s: could not save the crosswalk", job.pipeline)
            raise
        stats: Counter[str] = Counter()
        for client in (source, target_client):
            stats.update(client.stats.as_dict())
    duration = time.monotonic() - started
    manifest_path = None
    if not job.dry_run:
        crosswalk_file, rejects_file = await asyncio.to_thread(run.save, origin)
        manifest_path = await asyncio.to_thread(
            _write_manifest, job, crosswalk_file, rejects_file, dict(stats), started_at, duration
        )
    summary = _summary(job, run, dict(stats), duration, manifest_path)
    if not job.dry_run:
        text = json.dumps(summary.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
        await asyncio.to_thread(atomic_write_bytes, job.out / SUMMARY_NAME, text.encode())
    return summary


def _write_manifest(
    job: MigrationJob,
    crosswalk_file: WrittenFile,
    rejects_file: WrittenFile,
    stats: dict[str, float],
    started_at: datetime,
    duration: float,
) -> Path:
    manifest = RunManifest(
        run_id=job.run_id,
        pipeline=job.pipeline,
        source=job.source_crm,
        destination_format=job.target_crm,
        started_at=started_at.isoformat().replace("+00:00", "Z"),
        finished_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        duration_s=round(duration, 3),
        tables={
            "crosswalk": TableManifest.from_files(CROSSWALK_SCHEMA, [crosswalk_file]),
            "rejects": TableManifest.from_files(REJECTS_SCHEMA, [rejects_file]),
        },
        stats=stats,
    )
    mismatches = manifest_counts_match(job.out, manifest)
    if mismatches:
        raise MigrationError("the written files disagree with the counts: " + "; ".join(mismatches))
    return write_manifest(job.out, manifest)


def _per_table(counter: Counter[str]) -> dict[str, int]:
    return {table: counter[table] for table in TABLES}


def _summary(
    job: MigrationJob,
    run: _Migration,
    stats: dict[str, float],
    duration: float,
    manifest: Path | None,
) -> RunSummary:
    statuses: dict[str, Counter[str]] = {s: Counter() for s in ("rejected", "failed", "skipped")}
    for reject in run.rejects:
        statuses[reject.status][reject.table] += 1
    rejected = statuses["rejected"] + statuses["failed"]
    rate = job.target.pacing.rate
    details: dict[str, Any] = {
        "dry_run": job.dry_run,
        "source": job.source_crm,
        "target": job.target_crm,
        "extracted": _per_table(run.extracted),
        "planned": _per_table(run.planned),
        "written": _per_table(Counter(table for table, _ in run.written)),
        "carried_over": _per_table(run.carried()),
        "rejected": _per_table(rejected),
        "failed": _per_table(statuses["failed"]),
        "skipped": _per_table(statuses["skipped"]),
        "crosswalk": None if job.dry_run else str(job.out / CROSSWALK_NAME),
        "rejects_file": None if job.dry_run else str(job.out / REJECTS_NAME),
        "write_requests": run.write_requests,
        "estimated_seconds": round(run.write_requests / rate, 1) if rate else None,
        "dropped_properties": run.dropped_properties,
        "warnings": run.warnings,
    }
    migrated = Counter(table for table, _ in run.crosswalk)
    status = "dry-run" if job.dry_run else "partial" if sum(rejected.values()) else "ok"
    return RunSummary(
        run_id=job.run_id,
        pipeline=job.pipeline,
        kind="migrate",
        status=status,
        out=job.out,
        rows={t: 0 for t in TABLES} if job.dry_run else _per_table(migrated),
        files=0 if job.dry_run else 2,
        requests=int(stats.get("requests", 0)),
        calls=int(stats.get("calls", 0)),
        rate_limited=int(stats.get("rate_limited", 0)),
        retries=int(stats.get("retries", 0)),
        duration_s=round(duration, 3),
        manifest=manifest,
        details=details,
    )
