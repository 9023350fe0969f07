"""The CSV-to-CRM import: a messy spreadsheet in, every row loaded or rejected with its reason.

Two passes, both streaming:

1. *validate*: read, normalise and validate chunk by chunk (in a worker thread); rejects are
   recorded in the run state, valid rows are parked in a spill file on disk, and every valid
   row's email is noted;
2. *load*: the duplicate policy is settled over the whole file (``last`` wins by default, or
   later rows are rejected), then the spilled rows are upserted in chunks of up to 1000 with
   several chunks in flight, the account's pacing keeping the quota.

Every input row ends up in exactly one of ``success.csv`` (loaded) or ``rejects.csv`` (stage
``input``, ``validation``, ``duplicate`` or ``crm``, with the reason); ``summary.json`` proves
``input = loaded + rejected + duplicates`` or the run fails.

**Resumable.** The run directory (``job.out``) holds a :class:`RunState`: a fingerprint of the
input file and of the settings that change the outcome, and a ledger of write chunks. A chunk
(its key is its first and last line, with a hash of its rows) is recorded with its per-row
outcomes in one transaction, only after the CRM answered. When the CRM keeps failing beyond the
retry budget, or the run is cancelled (a signal), the state is marked ``interrupted``; running
again with ``resume=True`` redoes pass 1 (deterministic), skips every committed chunk and sends
only the rest, so at most the chunks that were in flight are sent twice (safe: upserts by
email). The outcome files are rendered from the state at the end, so they are the same whether
or not the run was interrupted. Dry runs keep no state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.clients import (
    RetryBudgetExhausted,
    SalesManagoClient,
    SalesManagoConfig,
    SalesNexusClient,
    SalesNexusConfig,
)
from etl.extract.csv_input import CsvChunk, CsvDialect, read_chunks, read_header, sniff
from etl.load.atomic import atomic_write_bytes
from etl.load.crm_contacts import (
    ContactWriter,
    SalesManagoContactWriter,
    SalesNexusContactWriter,
    TableResults,
    records_of,
)
from etl.load.spill import SpillFile
from etl.pipeline.outcomes import OutcomeCounts, OutcomeFiles, outcome_paths
from etl.pipeline.run import RunInterrupted, RunProgress, RunSummary, first_error, new_run_id
from etl.pipeline.state import (
    RejectRow,
    ResumeError,
    RunState,
    file_digest,
)
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
T = TypeVar("T")

WRITE_CHUNK_ROWS = 1000
QUEUE_CHUNKS = 4
STATE_KIND = "import"
INPUT_KEY = "input file"


class AccountingError(RuntimeError):
    """The rows could not be accounted for (a bug): the sums did not hold."""


@dataclass(frozen=True)
class ImportJob:
    """One import. ``out`` is the run directory (outcome files and ``state.db``); ``resume``
    continues the interrupted run recorded there instead of starting a new one."""

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
    resume: bool = False

    def __post_init__(self) -> None:
        if self.resume and self.dry_run:
            raise ValueError("a dry run keeps no state, so it cannot resume one")


@dataclass
class Accounting:
    input: int = 0
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    would_load: int = 0  # a dry run's rows that passed validation
    created: int = 0
    updated: int = 0
    chunks: int = 0  # write chunks of the whole file
    chunks_sent: int = 0  # sent by this invocation
    chunks_skipped: int = 0  # committed by an earlier, interrupted invocation
    pass1_s: float = 0.0  # wall seconds of this invocation's pass 1 (validate, settle duplicates)
    pass2_s: float = 0.0  # and of its pass 2 (upserts, outcome files)

    def balanced(self) -> bool:
        return self.input == self.loaded + self.would_load + self.rejected + self.duplicates


@dataclass(frozen=True)
class _Chunk:
    """One write chunk of pass 2: its rows, the duplicates dropped from them, its identity."""

    frame: pa.Table
    duplicates: list[RejectRow]
    key: str
    rows_hash: str

    @property
    def first_line(self) -> int:
        return int(self.frame["row"][0].as_py())

    @property
    def last_line(self) -> int:
        return int(self.frame["row"][-1].as_py())


def plan_mapping(job: ImportJob) -> tuple[CsvDialect, ColumnMapping]:
    """Sniff the file and decide the column mapping (raises InputFileError or MappingError)."""
    dialect = sniff(job.csv_path)
    headers = read_header(job.csv_path, dialect)
    return dialect, build_mapping(headers, job.mapping, unmapped=job.unmapped)


def import_fingerprint(job: ImportJob) -> dict[str, str]:
    """What a resume must find unchanged: the input's bytes and every setting that changes the
    outcome. Pacing, retries and credentials may change between attempts (never recorded)."""
    return {
        INPUT_KEY: file_digest(job.csv_path),
        "column mapping": json.dumps(dict(job.mapping or {}), sort_keys=True, ensure_ascii=False),
        "unmapped columns policy": job.unmapped,
        "normalisation options": json.dumps(dataclasses.asdict(job.options), sort_keys=True),
        "duplicates policy": job.duplicates,
        "target CRM": job.target_crm,
        "target base_url": job.target.base_url,
    }


def open_import_state(job: ImportJob, fingerprint: Mapping[str, str]) -> RunState:
    """A new state, the interrupted one to resume, or a scratch state for a dry run."""
    if job.dry_run:
        return RunState.scratch(kind=STATE_KIND, pipeline=job.pipeline, run_id=job.run_id)
    if not job.resume:
        return RunState.create(
            job.out,
            kind=STATE_KIND,
            pipeline=job.pipeline,
            run_id=job.run_id,
            fingerprint=fingerprint,
        )
    try:
        return RunState.resume(job.out, kind=STATE_KIND, fingerprint=fingerprint)
    except ResumeError as exc:
        if INPUT_KEY in exc.changed:
            raise ResumeError(
                f"{exc}: the input {job.csv_path} is not the file the run started with",
                changed=exc.changed,
            ) from None
        raise


@asynccontextmanager
async def _target_writer(job: ImportJob) -> AsyncIterator[tuple[ContactWriter, object]]:
    if isinstance(job.target, SalesManagoConfig):
        async with SalesManagoClient(job.target) as sm:
            yield SalesManagoContactWriter(sm), sm
    else:
        async with SalesNexusClient(job.target) as sn:
            catalog = FieldCatalog.from_api(await sn.get_all_fields())
            yield SalesNexusContactWriter(sn, catalog), sn


async def _in_thread(fn: Callable[..., T], *args: object, stop: threading.Event | None = None) -> T:
    """``fn`` in a worker thread. Cancelled, it asks ``fn`` to stop and waits for it to return,
    so no thread still touches the run state when the caller marks it interrupted."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if stop is not None:
            stop.set()
        await asyncio.wait([task])
        raise


def _reject_rows(chunk: CsvChunk, normalized: NormalizedChunk) -> list[RejectRow]:
    rows = [
        RejectRow(r.line, "input", r.reason, json.dumps({"raw": r.raw}, ensure_ascii=False))
        for r in chunk.rejects
    ]
    table = normalized.rejects
    rows.extend(
        RejectRow(line, "validation", reason, values)
        for line, reason, values in zip(
            table["line"].to_pylist(),
            table["reason"].to_pylist(),
            table["values"].to_pylist(),
            strict=True,
        )
    )
    return rows


async def run_import(job: ImportJob, progress: RunProgress | None = None) -> RunSummary:
    """Import one CSV file into the target CRM; returns the summary with the row accounting.

    Raises :class:`RunInterrupted` when the CRM keeps failing beyond the retry budget (the state
    is saved; resume later), and re-raises ``CancelledError`` after saving the state.
    """
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
    fingerprint = {} if job.dry_run else await asyncio.to_thread(import_fingerprint, job)
    state = open_import_state(job, fingerprint)  # before any request: a refusal costs nothing
    run_id = job.run_id if job.dry_run else state.run_id
    if job.resume:
        log.info("%s: resuming run %s in %s", job.pipeline, run_id, job.out)
    accounting = Accounting()
    spill: SpillFile | None = None
    try:
        spill = SpillFile(job.out / f".{run_id}.spill.arrow", load_frame_schema(mapping))
        async with _target_writer(job) as (writer, client):
            progress.transports.append(client.stats)  # type: ignore[attr-defined]
            problems = writer.check(mapping.columns.values(), mapping.properties.values())
            if problems:
                raise MappingError("; ".join(problems))
            pass1 = time.monotonic()
            hashes, lines = await _validate(job, dialect, mapping, state, spill, accounting)
            dropped = await asyncio.to_thread(
                _settle_duplicates, spill, hashes, lines, job.duplicates
            )
            accounting.pass1_s = time.monotonic() - pass1
            del hashes, lines
            counts = await _load(job, spill, dropped, writer, state, accounting, progress)
            stats = client.stats.as_dict()  # type: ignore[attr-defined]
        summary = _summary(job, run_id, accounting, counts, writer, stats, started)
    except (RetryBudgetExhausted, asyncio.CancelledError) as exc:
        if job.dry_run:
            state.close()
            raise
        state.set_status("interrupted")  # committed chunks stay committed: resume from here
        state.close()
        if isinstance(exc, RetryBudgetExhausted):
            raise RunInterrupted(job.out, f"the CRM kept failing or throttling: {exc}") from exc
        raise
    except BaseException:
        _give_up(job, state)
        raise
    finally:
        if spill is not None:
            spill.remove()
    if not job.dry_run:
        state.set_status("done")
    state.close()
    return summary


def _give_up(job: ImportJob, state: RunState) -> None:
    """After a failure: a new run that wrote nothing leaves nothing behind (running it again
    needs no ``--resume``); otherwise the state is kept, marked ``failed``, for a resume."""
    if job.dry_run or (not job.resume and not state.committed_chunks()):
        state.discard()
        return
    state.set_status("failed")
    state.close()


async def _validate(
    job: ImportJob,
    dialect: CsvDialect,
    mapping: ColumnMapping,
    state: RunState,
    spill: SpillFile,
    accounting: Accounting,
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1 (a worker thread): rejects to the state, valid rows to the spill; a 32-bit hash of
    every valid row's email with its line (8 bytes a row, so memory stays flat on big files; a
    collision only makes a row a candidate, which :func:`_settle_duplicates` checks exactly).

    Deterministic, so a resumed run redoes it and finds the same rows (its rejects are stored
    again, idempotently)."""
    stop = threading.Event()

    def validate() -> tuple[np.ndarray, np.ndarray]:
        pool = pa.default_memory_pool()
        hashes: list[np.ndarray] = []
        lines: list[np.ndarray] = []
        for chunk in read_chunks(job.csv_path, dialect, chunk_rows=job.read_chunk_rows):
            if stop.is_set():
                break
            accounting.input += len(chunk.lines) + len(chunk.rejects)
            normalized = normalize_chunk(chunk.table, chunk.lines, mapping, job.options)
            state.record_rejects(_reject_rows(chunk, normalized))
            contacts = normalized.contacts
            spill.write(contacts)
            hashes.append(_email_hashes(contacts))
            rows = contacts["row"].to_numpy()
            lines.append(rows.astype(np.int32) if len(rows) and rows[-1] < 2**31 else rows)
            del chunk, normalized, contacts
            pool.release_unused()  # else mimalloc keeps every chunk's freed pages: ~35 MB at 1M
        return _concat(hashes, np.uint32), _concat(lines, np.int32)

    return await _in_thread(validate, stop=stop)


def _concat(parts: list[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    """The parts end to end, each freed once copied (``np.concatenate`` holds all twice)."""
    out = np.empty(sum(len(p) for p in parts), dtype=np.result_type(dtype, *parts))
    at = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        out[at : at + len(part)] = part
        at += len(part)
    return out


def _email_hashes(contacts: pa.Table) -> np.ndarray:
    """A 32-bit hash of each row's email (pandas' vectorised 64-bit hash, folded)."""
    emails = pd.Series(contacts["email"].combine_chunks(), dtype="str")
    full = pd.util.hash_pandas_object(emails, index=False).to_numpy()
    return (full ^ (full >> np.uint64(32))).astype(np.uint32)


def _settle_duplicates(
    spill: SpillFile, hashes: np.ndarray, lines: np.ndarray, policy: DuplicatePolicy
) -> dict[int, int]:
    """{line of a dropped duplicate: line kept}. Only rows whose email hash occurs more than
    once are candidates; their exact emails are read back from the spill and compared there,
    so a hash collision can never drop a row."""
    candidates = _repeated(hashes, lines)
    if not len(candidates):
        return {}
    emails, candidate_lines = spill.column_values("email", rows=candidates)
    return find_duplicates(emails, candidate_lines, policy)


def _repeated(hashes: np.ndarray, lines: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """The lines whose hash occurs more than once, in order. One sorted copy of the hashes and
    block-sized temporaries (``np.unique`` with counts takes ~40 bytes a row: 80 MB at 2M)."""
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if not len(repeated):
        return lines[:0]
    found: list[np.ndarray] = []
    for start in range(0, len(hashes), block):
        part = hashes[start : start + block]
        at = np.minimum(np.searchsorted(repeated, part), len(repeated) - 1)
        found.append(lines[start : start + block][repeated[at] == part])
    return np.concatenate(found)


async def _load(
    job: ImportJob,
    spill: SpillFile,
    dropped: dict[int, int],
    writer: ContactWriter,
    state: RunState,
    accounting: Accounting,
    progress: RunProgress,
) -> OutcomeCounts:
    """Pass 2: spilled rows minus dropped duplicates, upserted with several chunks in flight;
    returns what the outcome files hold.

    Every state write happens here, one at a time (``state_lock``) in a worker thread, so a
    commit never stalls the event loop and never runs in the thread that reads the spill; a
    cancelled write waits for its transaction to finish (:func:`_in_thread`). The outcome
    files are written in the same thread as the chunks commit, up to the last line of the
    committed prefix of sent chunks (every outcome up to there is final), and published at
    the end, so rendering them mostly overlaps the CRM's work."""
    started = time.monotonic()
    policy = "the last occurrence wins" if job.duplicates == "last" else "the first is kept"
    batches = spill.batches(WRITE_CHUNK_ROWS, drop=dropped.keys())
    committed = {} if job.dry_run else state.committed_chunk_hashes()
    if committed:
        progress.rows["contacts"] += state.outcome_counts()["loaded"]

    def next_chunk() -> _Chunk | None:
        """The next full chunk of rows to send (duplicates already left out, so chunks stay at
        1000 rows), with the duplicates dropped since the previous one."""
        item = next(batches, None)
        if item is None:
            return None
        frame, dropped_rows = item
        duplicates = [
            RejectRow(
                int(record["row"]),
                "duplicate",
                f"duplicate email {record['email']}: line {dropped[int(record['row'])]} "
                f"is kept ({policy})",
                json.dumps(_plain(record), ensure_ascii=False, default=str),
            )
            for record in (records_of(dropped_rows) if dropped_rows is not None else [])
        ]
        if not frame.num_rows:
            return _Chunk(frame, duplicates, "", "")
        key = f"{frame['row'][0].as_py()}-{frame['row'][-1].as_py()}"
        return _Chunk(frame, duplicates, key, "" if job.dry_run else _rows_hash(frame))

    state_lock = asyncio.Lock()
    files = OutcomeFiles(state, job.out)
    sent_ends: list[int] = []  # the last line of each sent chunk, in send order
    answered: set[int] = set()  # positions in sent_ends whose chunk is committed
    frontier = 0  # every sent chunk before this position is committed

    def committed_through(position: int) -> int:
        """Mark a sent chunk committed; the last line up to which every outcome is final."""
        nonlocal frontier
        answered.add(position)
        while frontier in answered:
            answered.discard(frontier)
            frontier += 1
        return sent_ends[frontier - 1] if frontier else -1

    def record(chunk: _Chunk, results: TableResults, through: int) -> None:
        state.record_chunk(
            chunk.key,
            first_line=chunk.first_line,
            last_line=chunk.last_line,
            rows_hash=chunk.rows_hash,
            successes=results.successes(),
            rejects=[
                RejectRow(row, "crm", message or "refused by the CRM", "")
                for row, message in results.failures()
            ],
        )
        files.advance(through)

    async def write_one(chunk: _Chunk, position: int, slots: asyncio.Semaphore) -> None:
        try:
            results = await writer.write_table(chunk.frame)
            async with state_lock:  # only now: the CRM has answered for every row
                await _in_thread(record, chunk, results, committed_through(position))
            progress.rows["contacts"] += results.loaded
        finally:
            slots.release()

    slots = asyncio.Semaphore(_writer_concurrency(job))
    try:
        async with asyncio.TaskGroup() as group:
            while (chunk := await asyncio.to_thread(next_chunk)) is not None:
                if chunk.duplicates:
                    async with state_lock:
                        await _in_thread(state.record_rejects, chunk.duplicates)
                if not chunk.frame.num_rows:
                    continue
                accounting.chunks += 1
                if job.dry_run:
                    accounting.would_load += chunk.frame.num_rows
                    continue
                previous = committed.get(chunk.key)
                if previous == chunk.rows_hash:
                    accounting.chunks_skipped += 1
                    continue
                if previous is not None:
                    log.warning(
                        "chunk %s changed since it was committed: sending it again", chunk.key
                    )
                await slots.acquire()
                accounting.chunks_sent += 1
                sent_ends.append(chunk.last_line)
                group.create_task(write_one(chunk, len(sent_ends) - 1, slots))
        counts = await _in_thread(files.finish)
        accounting.pass2_s = time.monotonic() - started
        return counts
    except BaseExceptionGroup as error:
        files.abort()
        raise first_error(error) from None
    except BaseException:
        files.abort()
        raise


def _rows_hash(frame: pa.Table) -> str:
    """A digest of a chunk's rows (their values, in order): the Arrow IPC stream of the chunk as
    one record batch, so the same rows always give the same bytes, with no Python object made
    per value."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, frame.schema) as writer:
        writer.write_table(frame.combine_chunks())
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _plain(record: dict[str, object]) -> dict[str, object]:
    """A spilled row without its empty values, for the rejects file."""
    return {k: v for k, v in record.items() if k != "row" and v is not None and v == v}


def _summary(
    job: ImportJob,
    run_id: str,
    accounting: Accounting,
    counts: OutcomeCounts,
    writer: ContactWriter,
    stats: dict[str, float],
    started: float,
) -> RunSummary:
    """The accounting over the whole run (earlier, interrupted invocations included), checked,
    and written to ``summary.json``."""
    accounting.loaded = counts.loaded
    accounting.rejected = counts.rejected
    accounting.duplicates = counts.duplicates
    accounting.created = counts.statuses.get("created", 0)
    accounting.updated = counts.statuses.get("updated", 0)
    if not accounting.balanced():
        raise AccountingError(
            f"row accounting does not add up: input {accounting.input} != loaded "
            f"{accounting.loaded} + would load {accounting.would_load} + rejected "
            f"{accounting.rejected} + duplicates {accounting.duplicates}"
        )
    success_path, rejects_path = outcome_paths(job.out)
    details: dict[str, object] = {
        "input": accounting.input,
        "loaded": accounting.loaded,
        "rejected": accounting.rejected,
        "duplicates": accounting.duplicates,
        "would_load": accounting.would_load,
        "created": accounting.created,
        "updated": accounting.updated,
        "success_file": str(success_path),
        "rejects_file": str(rejects_path),
        "dry_run": job.dry_run,
        "resumed": job.resume,
        "chunks": accounting.chunks,
        "chunks_sent": accounting.chunks_sent,
        "chunks_skipped": accounting.chunks_skipped,
        "pass1_s": round(accounting.pass1_s, 3),
        "pass2_s": round(accounting.pass2_s, 3),
    }
    if job.dry_run:
        requests = writer.requests_for(accounting.would_load)
        rate = job.target.pacing.rate
        details["write_requests"] = requests
        details["estimated_seconds"] = round(requests / rate, 1) if rate else None
    status = "dry-run" if job.dry_run else ("partial" if accounting.rejected else "ok")
    summary = RunSummary(
        run_id=run_id,
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
        duration_s=round(time.monotonic() - started, 3),
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
