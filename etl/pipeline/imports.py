"""The CSV-to-CRM import: a messy spreadsheet in, every row loaded or rejected with its reason.

Two streaming passes over the file:

1. *duplicates*: read every row's email to find the emails that occur more than once and decide,
   by policy, which line of each is kept (``last`` wins by default, or ``reject`` later ones);
2. *load*: read, normalise and validate chunk by chunk (in a worker thread), drop the duplicates,
   and upsert the rest in chunks of up to 1000 with several chunks in flight, the account's
   pacing keeping the quota.

Every input row ends up in exactly one of ``success.csv`` (loaded), ``rejects.csv`` (rejected,
with stage and reason) or, for dropped duplicates, ``rejects.csv`` with stage ``duplicate``; the
summary proves ``input = loaded + rejected + duplicates`` or the run fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
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
from etl.pipeline.outcomes import OutcomeFiles
from etl.pipeline.run import RunProgress, RunSummary, first_error, new_run_id
from etl.transform.contact_input import (
    ColumnMapping,
    MappingError,
    NormalizedChunk,
    NormalizeOptions,
    build_mapping,
    email_keys,
    find_duplicates,
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


def _chunks(job: ImportJob, dialect: CsvDialect) -> Iterator[CsvChunk]:
    return read_chunks(job.csv_path, dialect, chunk_rows=job.read_chunk_rows)


def _duplicates(job: ImportJob, dialect: CsvDialect, mapping: ColumnMapping) -> dict[int, int]:
    """Pass 1: {line of a dropped duplicate: line of the row kept} over the whole file."""
    keys: list[pd.Series] = []
    lines: list[int] = []
    for chunk in _chunks(job, dialect):
        keys.append(email_keys(chunk.frame, mapping))
        lines.extend(chunk.lines)
    if not lines:
        return {}
    return find_duplicates(pd.concat(keys, ignore_index=True), lines, job.duplicates)


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


def _original_values(chunk: CsvChunk, lines: set[int]) -> dict[int, str]:
    positions = [i for i, line in enumerate(chunk.lines) if line in lines]
    records = chunk.frame.iloc[positions].to_dict("records")
    return {
        chunk.lines[i]: json.dumps(record, ensure_ascii=False)
        for i, record in zip(positions, records, strict=True)
    }


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
    dropped = await asyncio.to_thread(_duplicates, job, dialect, mapping)
    outcomes = OutcomeFiles(job.out)
    accounting = Accounting()
    try:
        async with _target_writer(job) as (writer, client):
            progress.transports.append(client.stats)  # type: ignore[attr-defined]
            problems = writer.check(
                [c for c in mapping.columns.values()], list(mapping.properties.values())
            )
            if problems:
                raise MappingError("; ".join(problems))
            valid_rows = await _load(
                job, dialect, mapping, dropped, writer, outcomes, accounting, progress
            )
            stats = client.stats.as_dict()  # type: ignore[attr-defined]
        outcomes.close()
    except BaseException:
        outcomes.abort()
        raise
    if not accounting.balanced():
        raise AccountingError(
            f"row accounting does not add up: input {accounting.input} != loaded "
            f"{accounting.loaded} + rejected {accounting.rejected} + duplicates "
            f"{accounting.duplicates}"
        )
    duration = time.monotonic() - started
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
        requests = writer.requests_for(valid_rows)
        rate = job.target.pacing.rate
        details["would_send_rows"] = valid_rows
        details["write_requests"] = requests
        details["estimated_seconds"] = round(requests / rate, 1) if rate else None
    summary = RunSummary(
        run_id=job.run_id,
        pipeline=job.pipeline,
        kind="import",
        status="dry-run" if job.dry_run else ("ok" if not accounting.rejected else "partial"),
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
    summary_json = json.dumps(summary.as_dict(), indent=2, ensure_ascii=False, default=str)
    atomic_write_bytes(job.out / "summary.json", (summary_json + "\n").encode())
    return summary


async def _load(
    job: ImportJob,
    dialect: CsvDialect,
    mapping: ColumnMapping,
    dropped: dict[int, int],
    writer: ContactWriter,
    outcomes: OutcomeFiles,
    accounting: Accounting,
    progress: RunProgress,
) -> int:
    """Pass 2: read -> normalise -> write; returns how many rows were (or would be) sent."""
    queue: asyncio.Queue[pd.DataFrame | None] = asyncio.Queue(QUEUE_CHUNKS)
    sent = 0

    def prepare(chunk: CsvChunk) -> tuple[pd.DataFrame, list[tuple[int, str, str, str]]]:
        normalized = normalize_chunk(chunk.frame, chunk.lines, mapping, job.options)
        rejects = _reject_rows(chunk, normalized)
        contacts = normalized.contacts
        if dropped and len(contacts):
            is_dup = contacts["row"].isin(dropped.keys())
            if is_dup.any():
                dup_lines = contacts.loc[is_dup, "row"].astype("int64").tolist()
                values = _original_values(chunk, set(dup_lines))
                policy = "last occurrence wins" if job.duplicates == "last" else "first kept"
                rejects.extend(
                    (
                        line,
                        "duplicate",
                        f"duplicate email, line {dropped[line]} kept ({policy})",
                        values[line],
                    )
                    for line in dup_lines
                )
                contacts = contacts.loc[~is_dup]
        return contacts.reset_index(drop=True), rejects

    async def read_stage() -> None:
        iterator = _chunks(job, dialect)
        while (chunk := await asyncio.to_thread(next, iterator, None)) is not None:
            accounting.input += len(chunk.frame) + len(chunk.rejects)
            contacts, rejects = await asyncio.to_thread(prepare, chunk)
            outcomes.reject(rejects)
            for start in range(0, len(contacts), WRITE_CHUNK_ROWS):
                await queue.put(contacts.iloc[start : start + WRITE_CHUNK_ROWS])
        await queue.put(None)

    async def write_one(frame: pd.DataFrame) -> None:
        results = await writer.write(frame)
        record(results)

    def record(results: list[RowResult]) -> None:
        outcomes.success([(r.row, r.email, r.id, r.status) for r in results if r.ok])
        failed = [
            (r.row, "crm", r.message or "refused by the CRM", "") for r in results if not r.ok
        ]
        outcomes.reject(failed)
        for r in results:
            if r.status == "created":
                accounting.created += 1
            elif r.status == "updated":
                accounting.updated += 1
        progress.rows["contacts"] += sum(r.ok for r in results)

    async def write_stage() -> None:
        nonlocal sent
        in_flight = max(1, _writer_concurrency(job))
        async with asyncio.TaskGroup() as group:
            slots = asyncio.Semaphore(in_flight)
            while (frame := await queue.get()) is not None:
                sent += len(frame)
                if job.dry_run:
                    continue
                await slots.acquire()
                task = group.create_task(write_one(frame))
                task.add_done_callback(lambda _t: slots.release())

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(read_stage())
            group.create_task(write_stage())
    except BaseExceptionGroup as error:
        raise first_error(error) from None
    accounting.loaded = outcomes.counts["loaded"]
    accounting.rejected = outcomes.counts["rejected"]
    accounting.duplicates = outcomes.counts["duplicates"]
    if job.dry_run:
        accounting.would_load = sent
    return sent


def _writer_concurrency(job: ImportJob) -> int:
    """Write chunks in flight: enough to fill every request slot (SalesNexus packs 25 calls)."""
    if isinstance(job.target, SalesNexusConfig):
        return 2 * job.target.calls_per_request
    return job.target.pacing.max_in_flight
