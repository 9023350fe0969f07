"""The export pipeline: CRM -> canonical tables -> Parquet dataset or CSV files.

Three stages joined by bounded queues, so a slow disk slows the API reads instead of filling
memory::

    extract (pages, prefetched) -> transform (Arrow, in a thread) -> load (sinks, in a thread)

CPU-heavy steps (building Arrow tables, encoding Parquet) run in worker threads so the event loop
stays free to keep the account's quota busy.

Every export is resumable. Its state lives in ``<out>/_runs/<run_id>/state.db``: a cursor per
stream, committed every ``checkpoint_pages`` pages only after the files written up to it are
durable in ``<out>/_runs/<run_id>/staging`` (see :mod:`etl.pipeline.checkpoint`). When the CRM
keeps failing past the retry budget, or the run is cancelled, it commits what is complete,
marks itself ``interrupted`` and raises :class:`RunInterrupted` (cancellation re-raises). A job
with ``resume_from`` continues such a run and ends exactly as an uninterrupted one would: the
same dataset layout, rows and manifest counts (only part file boundaries may differ).

``mode = "incremental"`` exports only what changed since the previous run, with tombstone
rows for deletions; what it carries from run to run is in :mod:`etl.pipeline.snapshots`, what
it reads in :mod:`etl.pipeline.export_phases`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from etl.clients import (
    RetryBudgetExhausted,
    SalesManagoClient,
    SalesManagoConfig,
    SalesNexusClient,
    SalesNexusConfig,
)
from etl.clients.config import account_name
from etl.extract import RawBatch
from etl.extract.incremental import plan_windows
from etl.load import (
    ResumableSink,
    RunManifest,
    StagedFile,
    StagingError,
    TableManifest,
    TableSink,
    WrittenFile,
    make_sink,
    manifest_counts_match,
    write_manifest,
)
from etl.load.manifest import RUNS_DIR
from etl.pipeline.checkpoint import DONE, FILES, Checkpointer, pump_units
from etl.pipeline.export_phases import (
    DELETED,
    EXPORTED,
    LISTED,
    TOMBSTONES,
    Phase,
    SalesManagoPhases,
    SalesNexusPhases,
    seen_namespace,
)
from etl.pipeline.run import RunInterrupted, RunProgress, RunSummary, first_error, new_run_id
from etl.pipeline.snapshots import KNOWN, CrossRunState, IncrementalSettings, hashes_namespace
from etl.pipeline.state import ResumeError, RunState
from etl.transform import SCHEMAS, TABLES, FieldCatalog
from etl.transform import salesmanago as sm_transform
from etl.transform import salesnexus as sn_transform

log = logging.getLogger("etl.pipeline")

Crm = Literal["salesmanago", "salesnexus"]
Mode = Literal["full", "incremental"]
Transform = Callable[[RawBatch], dict[str, pa.Table]]

RAW_QUEUE_PAGES = 2
# Pages fetched ahead per stream (4 already covers a quota of 20 req/s at 200 ms latency).
# Exports read SALESmanago pages straight into Arrow (~1 MB per 1000 contacts). SalesNexus pages
# arrive as decoded JSON (~3 MB each, and a packed answer of n pages peaks at ~8 MB per page
# while it is decoded); the calls of a window travel in one or two packed requests, so the
# window also bounds the size of a response: 25 pages cost ~60 MB more peak RSS than 4 (8: ~8).
SALESMANAGO_PREFETCH = 4
SALESNEXUS_PREFETCH = 4
TABLE_QUEUE_BATCHES = 6
# Rows per unit of work (pages grouped up to it): a 1000-row page costs Arrow ~100 calls of
# ~40 us each whatever its size, so converting 10 pages at once costs a fraction of 10 times one.
UNIT_ROWS = 10_000
RUN_KIND = "export"
STAGING_DIR = "staging"
PLAN = "plan"
USAGE = "usage"
PUBLISHED = "published"


class ExportError(RuntimeError):
    """The export could not complete; nothing partial was published as complete."""


@dataclass(frozen=True)
class ExportJob:
    """Everything one export run needs, independent of how it was specified.

    ``resume_from`` is the run directory (``<out>/_runs/<run_id>``) of an interrupted run to
    continue; its run id and partition date then come from its state, not from this job.
    """

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
    mode: Mode = "full"
    checkpoint_pages: int = 10
    incremental: IncrementalSettings = field(default_factory=IncrementalSettings)
    resume_from: Path | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.tables if t not in SCHEMAS]
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; expected some of {list(TABLES)}")
        if self.mode not in ("full", "incremental"):
            raise ValueError(f"unknown export mode {self.mode!r}; expected full or incremental")
        if self.checkpoint_pages < 1:
            raise ValueError("checkpoint_pages must be at least 1")

    @property
    def source_account(self) -> str:
        """The account read, without secrets (part of the run's fingerprint)."""
        return account_name(self.connection)

    def fingerprint(self) -> dict[str, str]:
        """What must not change between an interrupted run and its resumption."""
        return {
            "source account": self.source_account,
            "tables": ",".join(self.tables),
            "output format": self.fmt,
            "page size": str(self.page_size),
            "export mode": "full" if self.mode == "full" else self.incremental.describe(),
        }


@dataclass
class _Run:
    """An open run: its state, its plan (fixed when it started) and where it lives."""

    state: RunState
    plan: dict[str, Any]
    run_dir: Path
    resumed: bool

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def partition_date(self) -> date:
        return date.fromisoformat(self.plan["partition_date"])


async def run_export(job: ExportJob, progress: RunProgress | None = None) -> RunSummary:
    """Run (or resume) one export to completion and return its summary.

    Raises :class:`RunInterrupted` when the CRM's trouble outlasts the retry budget (the state
    is saved; resume with ``resume_from``), re-raises cancellation after saving the state, and
    raises :class:`ResumeError` for a run directory that cannot be resumed.
    """
    progress = progress or RunProgress(job.pipeline)
    with contextlib.ExitStack() as stack:
        cross = None
        if job.mode == "incremental":
            cross = stack.enter_context(CrossRunState(job.out))
            cross.check_source(job.crm, job.source_account)
        run = _open_run(job, cross)
        stack.callback(run.state.close)
        return await _execute(job, run, cross, progress)
    raise AssertionError("unreachable")  # pragma: no cover - the stack swallows no exception


def _open_run(job: ExportJob, cross: CrossRunState | None) -> _Run:
    fingerprint = job.fingerprint()
    if job.resume_from is None:
        run_dir = job.out / RUNS_DIR / job.run_id
        state = RunState.create(
            run_dir, kind=RUN_KIND, pipeline=job.pipeline, run_id=job.run_id,
            fingerprint=fingerprint,
        )  # fmt: skip
        plan = _new_plan(job, cross)
        state.put(PLAN, plan)
        return _Run(state, plan, run_dir, resumed=False)
    given = Path(job.resume_from)
    if given.resolve().parent != (job.out / RUNS_DIR).resolve():
        raise ResumeError(
            f"{given} is not a run directory of the output {job.out} (expected "
            f"{job.out / RUNS_DIR}/<run_id>); give the output directory of the interrupted run"
        )
    run_dir = job.out / RUNS_DIR / given.resolve().name  # staged paths are relative to out
    state = RunState.resume(run_dir, kind=RUN_KIND, fingerprint=fingerprint)
    plan = state.get(PLAN)
    if cross is not None and _moved_on(cross, plan, state.run_id):
        state.set_status("failed")  # superseded: its changes are in the newer run
        state.close()
        raise ResumeError(
            f"{run_dir}: cannot resume, the incremental state changed since the run started "
            f"(run {cross.info.get('last_run_id')} finished meanwhile); start a new run",
            changed=("incremental state",),
        )
    return _Run(state, plan, run_dir, resumed=True)


def _moved_on(cross: CrossRunState, plan: dict[str, Any], run_id: str) -> bool:
    """Whether another run advanced the incremental state since this one planned its reads
    (this run advancing it itself, just before it stopped, does not count)."""
    return cross.generation != plan.get("generation") and cross.info.get("last_run_id") != run_id


def _new_plan(job: ExportJob, cross: CrossRunState | None) -> dict[str, Any]:
    """What the run will do, fixed when it starts so that a resumed run does the same."""
    started = datetime.now(UTC)
    started_ms = int(started.timestamp() * 1000)
    plan: dict[str, Any] = {
        "mode": job.mode,
        "partition_date": job.partition_date.isoformat(),
        "started_at": _iso(started),
        "started_ms": started_ms,
    }
    if cross is None:
        return plan
    info, watermarks = cross.info, cross.watermarks()
    plan.update(
        generation=cross.generation,
        previous_run_id=info.get("last_run_id"),
        previous_watermarks=watermarks,
    )
    if job.crm == "salesnexus":
        plan["baseline"] = not watermarks
        return plan
    watermark = watermarks.get("contacts")
    if watermark is None:  # the first run reads everything and sets the watermark
        plan.update(baseline=True, windows=[], snapshot=False, to_ms=started_ms)
        return plan
    settings = job.incremental
    from_ms = watermark - settings.lag_seconds * 1000
    runs = int(info.get("runs_since_snapshot", 0)) + 1
    plan.update(
        baseline=False,
        from_ms=from_ms,
        to_ms=started_ms,
        windows=plan_windows(from_ms, started_ms, settings.window_seconds * 1000),
        snapshot=runs >= settings.snapshot_every,
        runs_since_snapshot=0 if runs >= settings.snapshot_every else runs,
    )
    return plan


async def _execute(
    job: ExportJob, run: _Run, cross: CrossRunState | None, progress: RunProgress
) -> RunSummary:
    started = time.monotonic()
    state = run.state
    sinks: dict[str, ResumableSink] = {
        table: make_sink(
            job.fmt,
            job.out,
            table,
            SCHEMAS[table],
            partition_date=run.partition_date,
            run_id=run.run_id,
            replace_partition=job.mode == "full",  # a full export is the day's snapshot
            staging=run.run_dir / STAGING_DIR,
        )
        for table in job.tables
    }
    checkpoint = state.get(FILES).get("files", [])
    try:
        for sink in sinks.values():
            sink.resume([StagedFile.from_dict(f) for f in checkpoint])
    except StagingError as exc:
        state.set_status("failed")
        raise ResumeError(f"{run.run_dir}: cannot resume: {exc}") from None
    positions = {stream: position for stream, (position, _) in state.cursors().items()}
    every = job.checkpoint_pages // pages_per_unit(job)
    checkpointer = Checkpointer(state, sinks, every=every, positions=positions)
    stats: dict[str, float] = {}
    try:
        stats = await _read(job, run, cross, checkpointer, progress)
        await checkpointer.checkpoint(final=True)
        files = await checkpointer.publish()
        checkpointer.close()
    except RetryBudgetExhausted as exc:
        _stop(run, checkpointer, sinks, "interrupted", progress, started)
        raise RunInterrupted(run.run_dir, f"the CRM kept failing or throttling: {exc}") from exc
    except asyncio.CancelledError:
        _stop(run, checkpointer, sinks, "interrupted", progress, started)
        raise
    except BaseException:
        _stop(run, checkpointer, sinks, "failed", progress, started)
        if not checkpointer.committed and not run.resumed:
            state.close()  # nothing worth resuming: leave nothing behind
            shutil.rmtree(run.run_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                (job.out / RUNS_DIR).rmdir()
        raise
    return _finish(job, run, cross, files, stats, time.monotonic() - started)


async def _read(
    job: ExportJob,
    run: _Run,
    cross: CrossRunState | None,
    checkpointer: Checkpointer,
    progress: RunProgress,
) -> dict[str, float]:
    """Every phase not done yet; returns the client's request statistics."""
    if isinstance(job.connection, SalesManagoConfig):
        async with SalesManagoClient(job.connection) as sm_client:
            progress.transports.append(sm_client.stats)
            sm = SalesManagoPhases(
                sm_client,
                tables=job.tables,
                page_size=job.page_size,
                prefetch=job.prefetch_pages or SALESMANAGO_PREFETCH,
                plan=run.plan,
                known=cross.known() if cross is not None else None,
                pages_per_unit=pages_per_unit(job),
            )
            await _run_phases(sm.phases(), run.state, checkpointer, progress)
            return sm_client.stats.as_dict()
    async with SalesNexusClient(job.connection) as sn_client:
        progress.transports.append(sn_client.stats)
        try:
            phases = None
            if _pending(run.state):
                catalog = FieldCatalog.from_api(await sn_client.get_all_fields())
                previous = {t: cross.hashes(t) for t in job.tables} if cross is not None else None
                sn = SalesNexusPhases(
                    sn_client,
                    catalog,
                    tables=job.tables,
                    page_size=job.page_size,
                    prefetch=job.prefetch_pages or SALESNEXUS_PREFETCH,
                    plan=run.plan,
                    previous=previous,
                    pages_per_unit=pages_per_unit(job),
                )
                phases = sn.phases()
            await _run_phases(phases or [], run.state, checkpointer, progress)
        finally:
            stats = sn_client.stats.as_dict()
        return stats


def pages_per_unit(job: ExportJob) -> int:
    """Pages per unit of work: at most ``UNIT_ROWS`` rows, and a divisor of
    ``checkpoint_pages`` so that checkpoints still fall every ``checkpoint_pages`` pages."""
    if job.crm == "salesnexus" and job.mode == "incremental":  # pages of decoded JSON (MBs)
        return 1
    most = max(1, UNIT_ROWS // job.page_size)
    return max(
        d for d in range(1, min(most, job.checkpoint_pages) + 1) if job.checkpoint_pages % d == 0
    )


def _pending(state: RunState) -> bool:
    """Whether a run still has anything to read (a resumed run may only need publishing)."""
    return not state.get(PUBLISHED)


async def _run_phases(
    phases: list[Phase], state: RunState, checkpointer: Checkpointer, progress: RunProgress
) -> None:
    for phase in phases:
        done = set(state.get(DONE))
        if all(stream in done for stream in phase.streams):
            continue
        await pump_units(phase.producers(state), checkpointer, progress)
        await checkpointer.checkpoint(done=phase.streams)


def _stop(
    run: _Run,
    checkpointer: Checkpointer,
    sinks: dict[str, ResumableSink],
    status: str,
    progress: RunProgress,
    started: float,
) -> None:
    """Save what is complete, keep the checkpointed files, record the attempt and the status."""
    saved = checkpointer.save_progress()
    for sink in sinks.values():
        sink.suspend()
    usage = _usage(run.state, progress.transport_totals(), time.monotonic() - started)
    run.state.put(USAGE, usage)
    run.state.set_status(status)
    log.info(
        "export %s %s after %d pages (%s)",
        run.run_id,
        status,
        progress.pages,
        "progress saved" if saved else "kept the last checkpoint",
    )


def _usage(state: RunState, stats: dict[str, float], elapsed: float) -> dict[str, Any]:
    """Request statistics and time of every attempt so far, this one included."""
    before = state.get(USAGE)
    totals = dict(before.get("stats", {}))
    for key, value in stats.items():
        totals[key] = totals.get(key, 0) + value
    return {
        "stats": totals,
        "elapsed_s": float(before.get("elapsed_s", 0.0)) + elapsed,
        "attempts": int(before.get("attempts", 0)) + 1,
    }


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
    run: _Run,
    cross: CrossRunState | None,
    files: dict[str, list[WrittenFile]],
    stats: dict[str, float],
    duration: float,
) -> RunSummary:
    """Manifest (checked against the files), then the incremental state, then ``done``."""
    state = run.state
    usage = _usage(state, stats, duration)
    totals = {k: round(v, 3) if isinstance(v, float) else v for k, v in usage["stats"].items()}
    totals["attempts"] = usage["attempts"]
    window = _window(job, run) if cross is not None else None
    manifest = RunManifest(
        run_id=run.run_id,
        pipeline=job.pipeline,
        source=job.crm,
        destination_format=job.fmt,
        started_at=run.plan["started_at"],
        finished_at=_iso(datetime.now(UTC)),
        duration_s=round(usage["elapsed_s"], 3),
        tables={t: TableManifest.from_files(SCHEMAS[t], fs) for t, fs in files.items()},
        stats=totals,
        window=window,
    )
    mismatches = manifest_counts_match(job.out, manifest)
    if mismatches:
        state.set_status("failed")
        raise ExportError("the written files disagree with the counts: " + "; ".join(mismatches))
    manifest_path = write_manifest(job.out, manifest)
    state.put(PUBLISHED, {"manifest": str(manifest_path)})
    if cross is not None and cross.info.get("last_run_id") != run.run_id:
        _advance(job, run, cross)
    state.put(USAGE, usage)
    state.set_status("done")
    state.apply({}, clear=[EXPORTED, LISTED, *(seen_namespace(t) for t in job.tables)])
    shutil.rmtree(run.run_dir / STAGING_DIR, ignore_errors=True)
    return RunSummary(
        run_id=run.run_id,
        pipeline=job.pipeline,
        kind="export",
        status="ok",
        out=job.out,
        rows={t: m.rows for t, m in manifest.tables.items()},
        files=sum(len(m.files) for m in manifest.tables.values()),
        requests=int(totals.get("requests", 0)),
        calls=int(totals.get("calls", 0)),
        rate_limited=int(totals.get("rate_limited", 0)),
        retries=int(totals.get("retries", 0)),
        duration_s=round(usage["elapsed_s"], 3),
        manifest=manifest_path,
        details={"mode": job.mode, "attempts": usage["attempts"], "window": window},
    )


def _window(job: ExportJob, run: _Run) -> dict[str, Any]:
    """The manifest's account of what an incremental run covered."""
    plan = run.plan
    deleted: dict[str, int] = {}
    for counts in run.state.get(TOMBSTONES).values():
        for table, n in counts.items():
            deleted[table] = deleted.get(table, 0) + int(n)
    previous = plan.get("previous_watermarks", {})
    snapshot = {"against_run_id": plan.get("previous_run_id"), "at_ms": plan["started_ms"]}
    window: dict[str, Any] = {"mode": "incremental", "baseline": bool(plan.get("baseline"))}
    if job.crm == "salesmanago":
        window["streams"] = {"contacts": {"from_ms": plan.get("from_ms"), "to_ms": plan["to_ms"]}}
        window["windows"] = plan.get("windows", [])
        window["snapshot"] = snapshot if plan.get("snapshot") else None
    else:
        window["streams"] = {
            t: {"from_ms": previous.get(t), "to_ms": plan["started_ms"]} for t in job.tables
        }
        window["snapshot"] = snapshot
    window["tombstones"] = {t: deleted.get(t, 0) for t in job.tables}
    return window


def _advance(job: ExportJob, run: _Run, cross: CrossRunState) -> None:
    """Carry this run's snapshot to the next run (after its files are published)."""
    state, plan = run.state, run.plan
    puts: dict[str, dict[str, Any]] = {}
    deletes: dict[str, list[str]] = {}
    if job.crm == "salesmanago":
        gone = state.get(DELETED)
        exported = state.get(EXPORTED)
        puts[KNOWN] = {cid: kids for cid, kids in exported.items() if cid not in gone}
        deletes[KNOWN] = list(gone)
        watermarks = {"contacts": int(plan["to_ms"])}
        runs = int(plan.get("runs_since_snapshot", 0))
    else:
        for table in job.tables:
            seen = state.get(seen_namespace(table))
            before = cross.hashes(table)
            puts[hashes_namespace(table)] = {i: h for i, h in seen.items() if before.get(i) != h}
            deletes[hashes_namespace(table)] = [i for i in before if i not in seen]
        watermarks = {t: int(plan["started_ms"]) for t in job.tables}
        runs = 0
    cross.advance(
        run_id=run.run_id,
        source=job.crm,
        account=job.source_account,
        watermarks=watermarks,
        puts=puts,
        deletes=deletes,
        runs_since_snapshot=runs,
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
