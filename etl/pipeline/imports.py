"""The CSV-to-CRM import: a messy spreadsheet in, every row loaded or rejected with its reason.

Two passes, both streaming:

1. *validate*: read, normalise and validate chunk by chunk (in a worker thread); rejects go
   straight to ``rejects.csv``, valid rows are parked in a spill file on disk, and every valid
   row's email is noted;
2. *load*: the duplicate policy is settled over the whole file (``last`` wins by default, or
   later rows are rejected), then the spilled rows are upserted in chunks of up to 1000 with
   several chunks in flight, the account's pacing keeping the quota.

Every input row ends up in exactly one of ``success.csv`` (loaded) or ``rejects.csv`` (stage
``input``, ``validation``, ``duplicate`` or ``crm``, with the reason); ``summary.json`` proves
``input = loaded + rejected + duplicates`` or the run fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from etl.clients import SalesManagoClient, SalesManagoConfig, SalesNexusClient, SalesNexusConfig
from etl.extract.csv_input import CsvChunk, CsvDialect, read_chunks, read_header, sniff
from etl.load.atomic import atomic_write_bytes
from etl.load.crm_contacts import (
    ContactWriter,
    RowResult,
    SalesManagoContactWriter,
    SalesNexusContactWriter,
)
from etl.load.spill import SpillFile
from etl.pipeline.outcomes import OutcomeFiles
from etl.pipeline.run import RunProgress, RunSummary, first_error, new_run_id
from etl.transform.contact_input import (
    ColumnMapping,
    MappingError,
    NormalizedChunk,
    NormalizeOptions,
    build_mapping,
    find_duplicates,
    load_frame_schema,
    normalize_chunk,
)
from etl.transform.salesnexus import FieldCatalog

log = logging.getLogger("etl.pipeline")

Crm = Literal["salesmanago", "salesnexus"]
DuplicatePolicy = Literal["last", "reject"]

WRITE_CHUNK_ROWS = 1000
QUEUE_CHUNKS = 4


class AccountingError(RuntimeError):
    """The rows could not be accounted for (a bug): the sums did not hold."""


@dataclass(frozen=True)
class ImportJob:
    pipeline: str
    csv_path: Path
    target_crm: Crm
    target: SalesManagoConfig | SalesNexusConfig
    out: Path
    mapping: Mapping[str, str] | None = None
    unmapped: Literal["properties", "ignore"] = "properties"
    options: NormalizeOptions = field(default_factory=NormalizeOptions)
    duplicates: DuplicatePolicy = "last"
    read_chunk_rows: int = 10_000
    dry_run: bool = False
    run_id: str = field(default_factory=new_run_id)


@dataclass
class Accounting:
    input: int = 0
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    would_load: int = 0  # a dry run's rows that passed validation
    created: int = 0
    updated: int = 0

    def balanced(self) -> bool:
        return self.input == self.loaded + self.would_load + self.rejected + self.duplicates


def plan_mapping(job: ImportJob) -> tuple[CsvDialect, ColumnMapping]:
    """Sniff the file and decide the column mapping (raises InputFileError or MappingError)."""
    dialect = sniff(job.csv_path)
    headers = read_header(job.csv_path, dialect)
    return dialect, build_mapping(headers, job.mapping, unmapped=job.unmapped)


@asynccontextmanager
async def _target_writer(job: ImportJob) -> AsyncIterator[tuple[ContactWriter, object]]:
    if isinstance(job.target, SalesManagoConfig):
        async with SalesManagoClient(job.target) as sm:
            yield SalesManagoContactWriter(sm), sm
    else:
        async with SalesNexusClient(job.target) as sn:
            catalog = FieldCatalog.from_api(await sn.get_all_fields())
            yield SalesNexusContactWriter(sn, catalog), sn


def _reject_rows(chunk: CsvChunk, normalized: NormalizedChunk) -> list[tuple[int, str, str, str]]:
    rows = [
        (r.line, "input", r.reason, json.dumps({"raw": r.raw}, ensure_ascii=False))
        for r in chunk.rejects
    ]
    frame = normalized.rejects
    rows.extend(
        zip(
            frame["line"].astype("int64").tolist(),
            ["validation"] * len(frame),
            frame["reason"].astype(str).tolist(),
            frame["values"].astype(str).tolist(),
            strict=True,
        )
    )
    return rows


async def run_import(job: ImportJob, progress: RunProgress | None = None) -> RunSummary:
    """Import one CSV file into the target CRM; returns the summary with the row accounting."""
    progress = progress or RunProgress(job.pipeline)
    started = time.monotonic()
    dialect, mapping = await asyncio.to_thread(plan_mapping, job)
    log.info(
        "%s: reading %s (%s, delimiter %r); column mapping:\n  %s",
        job.pipeline,
        job.csv_path,
        dialect.encoding,
        dialect.delimiter,
        "\n  ".join(mapping.describe()),
    )
    outcomes = OutcomeFiles(job.out)
    spill = SpillFile(job.out / f".{job.run_id}.spill.arrow", load_frame_schema(mapping))
    accounting = Accounting()
    try:
        async with _target_writer(job) as (writer, client):
            progress.transports.append(client.stats)  # type: ignore[attr-defined]
            problems = writer.check(mapping.columns.values(), mapping.properties.values())
            if problems:
                raise MappingError("; ".join(problems))
            emails, lines = await asyncio.to_thread(
                _validate, job, dialect, mapping, outcomes, spill, accounting
            )
            dropped = await asyncio.to_thread(find_duplicates, emails, lines, job.duplicates)
            await _load(job, spill, dropped, writer, outcomes, accounting, progress)
            stats = client.stats.as_dict()  # type: ignore[attr-defined]
        outcomes.close()
    except BaseException:
        outcomes.abort()
        raise
    finally:
        spill.remove()
    accounting.loaded = outcomes.counts["loaded"]
    accounting.rejected = outcomes.counts["rejected"]
    accounting.duplicates = outcomes.counts["duplicates"]
    if not accounting.balanced():
        raise AccountingError(
            f"row accounting does not add up: input {accounting.input} != loaded "
            f"{accounting.loaded} + would load {accounting.would_load} + rejected "
            f"{accounting.rejected} + duplicates {accounting.duplicates}"
        )
    return _summary(job, accounting, outcomes, writer, stats, time.monotonic() - started)


def _validate(
    job: ImportJob,
    dialect: CsvDialect,
    mapping: ColumnMapping,
    outcomes: OutcomeFiles,
    spill: SpillFile,
    accounting: Accounting,
) -> tuple[list[str], list[int]]:
    """Pass 1 (a worker thread): rejects to the file, valid rows to the spill; their emails."""
    emails: list[str] = []
    lines: list[int] = []
    for chunk in read_chunks(job.csv_path, dialect, chunk_rows=job.read_chunk_rows):
        accounting.input += len(chunk.frame) + len(chunk.rejects)
        normalized = normalize_chunk(chunk.frame, chunk.lines, mapping, job.options)
        outcomes.reject(_reject_rows(chunk, normalized))
        contacts = normalized.contacts
        spill.write(contacts)
        emails.extend(contacts["email"].tolist())
        lines.extend(contacts["row"].astype("int64").tolist())
    return emails, lines


async def _load(
    job: ImportJob,
    spill: SpillFile,
    dropped: dict[int, int],
    writer: ContactWriter,
    outcomes: OutcomeFiles,
    accounting: Accounting,
    progress: RunProgress,
) -> None:
    """Pass 2: spilled rows minus dropped duplicates, upserted with several chunks in flight."""
    policy = "the last occurrence wins" if job.duplicates == "last" else "the first is kept"
    batches = spill.batches(WRITE_CHUNK_ROWS)

    def next_frame() -> pd.DataFrame | None:
        frame = next(batches, None)
        if frame is None or not dropped:
            return frame
        is_dup = frame["row"].isin(dropped.keys())
        if is_dup.any():
            duplicates = frame.loc[is_dup]
            outcomes.reject(
                [
                    (
                        int(record["row"]),
                        "duplicate",
                        f"duplicate email {record['email']}: line {dropped[int(record['row'])]} "
                        f"is kept ({policy})",
                        json.dumps(_plain(record), ensure_ascii=False, default=str),
                    )
                    for record in duplicates.to_dict("records")
                ]
            )
            frame = frame.loc[~is_dup].reset_index(drop=True)
        return frame

    def record(results: list[RowResult]) -> None:
        outcomes.success([(r.row, r.email, r.id, r.status) for r in results if r.ok])
        outcomes.reject(
            [(r.row, "crm", r.message or "refused by the CRM", "") for r in results if not r.ok]
        )
        accounting.created += sum(r.status == "created" for r in results)
        accounting.updated += sum(r.status == "updated" for r in results)
        progress.rows["contacts"] += sum(r.ok for r in results)

    async def write_one(frame: pd.DataFrame, slots: asyncio.Semaphore) -> None:
        try:
            record(await writer.write(frame))
        finally:
            slots.release()

    slots = asyncio.Semaphore(_writer_concurrency(job))
    try:
        async with asyncio.TaskGroup() as group:
            while (frame := await asyncio.to_thread(next_frame)) is not None:
                if not len(frame):
                    continue
                if job.dry_run:
                    accounting.would_load += len(frame)
                    continue
                await slots.acquire()
                group.create_task(write_one(frame, slots))
    except BaseExceptionGroup as error:
        raise first_error(error) from None


def _plain(record: dict[str, object]) -> dict[str, object]:
    """A spilled row without its empty values, for the rejects file."""
    return {k: v for k, v in record.items() if k != "row" and v is not None and v == v}


def _summary(
    job: ImportJob,
    accounting: Accounting,
    outcomes: OutcomeFiles,
    writer: ContactWriter,
    stats: dict[str, float],
    duration: float,
) -> RunSummary:
    details: dict[str, object] = {
        "input": accounting.input,
        "loaded": accounting.loaded,
        "rejected": accounting.rejected,
        "duplicates": accounting.duplicates,
        "would_load": accounting.would_load,
        "created": accounting.created,
        "updated": accounting.updated,
        "success_file": str(outcomes.success_path),
        "rejects_file": str(outcomes.rejects_path),
        "dry_run": job.dry_run,
    }
    if job.dry_run:
        requests = writer.requests_for(accounting.would_load)
        rate = job.target.pacing.rate
        details["write_requests"] = requests
        details["estimated_seconds"] = round(requests / rate, 1) if rate else None
    status = "dry-run" if job.dry_run else ("partial" if accounting.rejected else "ok")
    summary = RunSummary(
        run_id=job.run_id,
        pipeline=job.pipeline,
        kind="import",
        status=status,
        out=job.out,
        rows={"contacts": accounting.loaded},
        files=2,
        requests=int(stats.get("requests", 0)),
        calls=int(stats.get("calls", 0)),
        rate_limited=int(stats.get("rate_limited", 0)),
        retries=int(stats.get("retries", 0)),
        duration_s=round(duration, 3),
        details=details,
    )
    text = json.dumps(summary.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
    atomic_write_bytes(job.out / "summary.json", text.encode())
    return summary


def _writer_concurrency(job: ImportJob) -> int:
    """Write chunks in flight: enough to fill every request slot (SalesNexus packs 25 calls)."""
    if isinstance(job.target, SalesNexusConfig):
        return 2 * job.target.calls_per_request
    return job.target.pacing.max_in_flight
