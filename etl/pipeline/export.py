"""The export pipeline: CRM -> canonical tables -> Parquet dataset or CSV files.

Three stages joined by bounded queues, so a slow disk slows the API reads instead of filling
memory::

    extract (pages, prefetched) -> transform (Arrow, in a thread) -> load (sinks, in a thread)

CPU-heavy steps (building Arrow tables, encoding Parquet) run in worker threads so the event loop
stays free to keep the account's quota busy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa

from etl.clients import SalesManagoClient, SalesManagoConfig, SalesNexusClient, SalesNexusConfig
from etl.extract import RawBatch, SalesManagoSource, SalesNexusSource
from etl.load import (
    RunManifest,
    TableManifest,
    TableSink,
    WrittenFile,
    make_sink,
    manifest_counts_match,
    write_manifest,
)
from etl.pipeline.run import RunProgress, RunSummary, first_error, new_run_id
from etl.transform import SCHEMAS, TABLES, FieldCatalog
from etl.transform import salesmanago as sm_transform
from etl.transform import salesnexus as sn_transform

log = logging.getLogger("etl.pipeline")

Crm = Literal["salesmanago", "salesnexus"]
Transform = Callable[[RawBatch], dict[str, pa.Table]]

RAW_QUEUE_PAGES = 8
TABLE_QUEUE_BATCHES = 16


class ExportError(RuntimeError):
    """The export could not complete; nothing partial was published as complete."""


@dataclass(frozen=True)
class ExportJob:
    """Everything one export run needs, independent of how it was specified."""

    pipeline: str
    crm: Crm
    connection: SalesManagoConfig | SalesNexusConfig
    out: Path
    tables: Sequence[str] = TABLES
    fmt: Literal["parquet", "csv"] = "parquet"
    page_size: int = 1000
    prefetch_pages: int | None = None
    run_id: str = field(default_factory=new_run_id)
    partition_date: date = field(default_factory=lambda: datetime.now(UTC).date())

    def __post_init__(self) -> None:
        unknown = [t for t in self.tables if t not in SCHEMAS]
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; expected some of {list(TABLES)}")


async def run_export(job: ExportJob, progress: RunProgress | None = None) -> RunSummary:
    """Run one export to completion and return its summary (the manifest is on disk)."""
    progress = progress or RunProgress(job.pipeline)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    sinks: dict[str, TableSink] = {
        table: make_sink(
            job.fmt,
            job.out,
            table,
            SCHEMAS[table],
            partition_date=job.partition_date,
            run_id=job.run_id,
            replace_partition=True,  # a full export is the day's snapshot
        )
        for table in job.tables
    }
    try:
        if isinstance(job.connection, SalesManagoConfig):
            async with SalesManagoClient(job.connection) as sm_client:
                progress.transports.append(sm_client.stats)
                source = SalesManagoSource(
                    sm_client, page_size=job.page_size, prefetch=job.prefetch_pages or 8
                )
                await pump_tables(
                    source.batches,
                    ["contacts"],
                    salesmanago_transform(job.tables),
                    sinks,
                    progress,
                )
                stats = sm_client.stats.as_dict()
        else:
            async with SalesNexusClient(job.connection) as sn_client:
                progress.transports.append(sn_client.stats)
                catalog = FieldCatalog.from_api(await sn_client.get_all_fields())
                source_sn = SalesNexusSource(
                    sn_client, page_size=job.page_size, prefetch=job.prefetch_pages or 25
                )
                await pump_tables(
                    source_sn.batches,
                    list(job.tables),
                    salesnexus_transform(catalog),
                    sinks,
                    progress,
                )
                stats = sn_client.stats.as_dict()
        files = {t: await asyncio.to_thread(sink.close) for t, sink in sinks.items()}
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        raise
    return _finish(job, files, stats, started_at, time.monotonic() - started)


async def pump_tables(
    batches: Callable[[str], AsyncIterator[RawBatch]],
    streams: list[str],
    transform: Transform,
    sinks: dict[str, TableSink],
    progress: RunProgress,
) -> None:
    """Pages of ``streams`` -> ``transform`` -> ``sinks`` by table, joined by bounded queues."""
    raw_queue: asyncio.Queue[RawBatch | None] = asyncio.Queue(RAW_QUEUE_PAGES)
    table_queue: asyncio.Queue[tuple[str, pa.Table] | None] = asyncio.Queue(TABLE_QUEUE_BATCHES)

    async def extract_stream(stream: str) -> None:
        async for batch in batches(stream):
            progress.pages += 1
            await raw_queue.put(batch)

    async def extract() -> None:
        async with asyncio.TaskGroup() as group:
            for stream in streams:
                group.create_task(extract_stream(stream))
        await raw_queue.put(None)

    async def transform_stage() -> None:
        while (batch := await raw_queue.get()) is not None:
            tables = await asyncio.to_thread(transform, batch)
            for name, table in tables.items():
                if name in sinks and table.num_rows:
                    await table_queue.put((name, table))
        await table_queue.put(None)

    async def load_stage() -> None:
        while (item := await table_queue.get()) is not None:
            name, table = item
            await asyncio.to_thread(sinks[name].write, table)
            progress.rows[name] += table.num_rows

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(extract())
            group.create_task(transform_stage())
            group.create_task(load_stage())
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None


def salesmanago_transform(tables: Sequence[str]) -> Transform:
    """One page of contacts -> the requested tables (unrequested ones are never built)."""

    def transform(batch: RawBatch) -> dict[str, pa.Table]:
        return sm_transform.split_page(batch.records, tables)

    return transform


def salesnexus_transform(catalog: FieldCatalog) -> Transform:
    def transform(batch: RawBatch) -> dict[str, pa.Table]:
        ids = batch.ids or []
        if batch.stream == "contacts":
            return {"contacts": sn_transform.contacts_table(ids, batch.records, catalog)}
        if batch.stream == "activities":
            return {"activities": sn_transform.activities_table(ids, batch.records)}
        return {"sales": sn_transform.sales_table(ids, batch.records, catalog)}

    return transform


def _finish(
    job: ExportJob,
    files: dict[str, list[WrittenFile]],
    stats: dict[str, float],
    started_at: datetime,
    duration: float,
) -> RunSummary:
    manifest = RunManifest(
        run_id=job.run_id,
        pipeline=job.pipeline,
        source=job.crm,
        destination_format=job.fmt,
        started_at=started_at.isoformat().replace("+00:00", "Z"),
        finished_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        duration_s=round(duration, 3),
        tables={t: TableManifest.from_files(SCHEMAS[t], fs) for t, fs in files.items()},
        stats=stats,
    )
    mismatches = manifest_counts_match(job.out, manifest)
    if mismatches:
        raise ExportError("the written files disagree with the counts: " + "; ".join(mismatches))
    manifest_path = write_manifest(job.out, manifest)
    return RunSummary(
        run_id=job.run_id,
        pipeline=job.pipeline,
        kind="export",
        status="ok",
        out=job.out,
        rows={t: m.rows for t, m in manifest.tables.items()},
        files=sum(len(m.files) for m in manifest.tables.values()),
        requests=int(stats.get("requests", 0)),
        calls=int(stats.get("calls", 0)),
        rate_limited=int(stats.get("rate_limited", 0)),
        retries=int(stats.get("retries", 0)),
        duration_s=round(duration, 3),
        manifest=manifest_path,
    )
