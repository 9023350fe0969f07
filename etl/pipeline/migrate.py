"""The migration: one CRM's contacts, activities and sales into the other, and a crosswalk back.

::

    extract (the export's pump, into memory) -> contacts (upsert by email, all of them first)
        -> activities and sales (linked to the new contact ids) -> crosswalk.parquet, rejects.csv

Every source record ends in ``<out>/crosswalk.parquet`` (table, source_id, target_id,
target_kind) or in ``<out>/rejects.csv`` (table, source_id, status, reason), where status is
``rejected`` (could not be mapped, e.g. no email or its contact did not move), ``failed`` (the CRM
refused it, with the CRM's message) or ``skipped`` (no counterpart in the target).

Every answer of the target is recorded as it arrives, in the run's state (``<out>/state.db``, one
transaction per wave of writes): a run that stops half way (the retry budget ran out, a signal, a
``kill -9``) is continued with ``resume`` and sends nothing twice. Before each wave of activities
and sales, the records about to be sent are marked in the state; a resumed run looks the marked
records that have no recorded answer up in the target (``RecordWriter.find``) and adopts those it
finds. The crosswalk and the rejects are rendered from the state when the run completes, the same
as an uninterrupted run's. A resume is refused when the connections, tables or property map
changed; a new run is refused in a directory that holds an unfinished one.

Re-running a *finished* migration into the same directory creates no duplicates either: contacts
are upserted by email again (same ids); activities and sales already in the crosswalk are skipped
and their rows carried over; SALESmanago tasks are also idempotent on their own, their ids being
derived from the source ids.

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
    AmbiguousWriteError,
    AuthenticationError,
    CRMError,
    RetryBudgetExhausted,
    SalesManagoClient,
    SalesManagoConfig,
    SalesNexusClient,
    SalesNexusConfig,
)
from etl.clients.config import account_name
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
from etl.pipeline.run import RunInterrupted, RunProgress, RunSummary, new_run_id
from etl.pipeline.state import RunState
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
Key = tuple[str, str]  # (table, source_id)

CONTACT_CHUNK_ROWS = 1000  # one batchupsert / import-contacts call
AMBIGUOUS_ROUNDS = 3  # look-ups and re-sends of writes whose answer was lost
RECORD_WAVE = 250  # activity and sale calls in flight together (a multiple of 25)
# Errors after which sending more only fails the same way: the run stops (and can be resumed).
FATAL_ERRORS = (AuthenticationError, RetryBudgetExhausted)
SUMMARY_NAME = "summary.json"
STATE_KIND = "migrate"
# State namespaces: one entry per source record this run sent ("table:source_id" -> its status:
# sent, done with the target id, or failed), and the run's own bookkeeping.
RECORDS = "records"
RUN = "run"
_CRM_OF_CONFIG: dict[type, Crm] = {
    SalesManagoConfig: "salesmanago",
    SalesNexusConfig: "salesnexus",
}


class MigrationError(RuntimeError):
    """The migration could not be planned or its output does not add up."""


@dataclass(frozen=True)
class MigrationJob:
    """One migration run. ``property_map`` renames contact properties on the way (source name ->
    target name, e.g. ``{"custom.lead_source": "Lead Source"}`` for a SalesNexus field).

    ``out`` is the run directory (outputs and ``state.db``); ``resume`` continues the unfinished
    run recorded there instead of starting a new one.
    """

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
    resume: bool = False

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
        if self.resume and self.dry_run:
            raise ValueError("a dry run writes nothing, so there is nothing to resume")


def fingerprint(job: MigrationJob) -> dict[str, str]:
    """What a resumed run must share with the run it continues; no secrets (a rotated key or
    password does not stop a resume), no pacing (a slower resume is fine)."""

    def connection(crm: str, config: SalesManagoConfig | SalesNexusConfig) -> str:
        return f"{crm} {config.base_url} {account_name(config)}"

    return {
        "source connection": connection(job.source_crm, job.source),
        "target connection": connection(job.target_crm, job.target),
        "tables": ",".join(job.tables),
        "property map": json.dumps(dict(job.property_map), sort_keys=True),
    }


def _client(config: SalesManagoConfig | SalesNexusConfig) -> Client:
    if isinstance(config, SalesManagoConfig):
        return SalesManagoClient(config)
    return SalesNexusClient(config)


def _state_key(table: str, source_id: str) -> str:
    return f"{table}:{source_id}"


def _split_key(key: str) -> Key:
    table, _, source_id = key.partition(":")  # table names hold no colon; source ids may
    return table, source_id


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
        SalesNexusRecordWriter(client, catalog),
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


# -- the run's state ---------------------------------------------------------------------------
@dataclass
class _Opened:
    state: RunState
    run_id: str
    attempt: int
    previous: list[CrosswalkRow]
    recorded: dict[str, dict[str, Any]]


def _open_state(job: MigrationJob, origin: CrosswalkOrigin) -> _Opened:
    """A new run's state (refused where an unfinished run lives), or the state to resume."""
    marks = fingerprint(job)
    if job.resume:
        state = RunState.resume(job.out, kind=STATE_KIND, fingerprint=marks)
    else:
        # An earlier finished run's crosswalk: read before the state exists, so a crosswalk of
        # another migration is refused without leaving a state behind.
        previous = read_crosswalk(job.out / CROSSWALK_NAME, origin)
        state = RunState.create(
            job.out, kind=STATE_KIND, pipeline=job.pipeline, run_id=job.run_id, fingerprint=marks
        )
        state.put(RUN, {"previous": [list(_row_values(r)) for r in previous], "attempts": 0})
    try:
        run = state.get(RUN)
        attempt = int(run.get("attempts", 0)) + 1
        state.put(RUN, {"attempts": attempt})
        return _Opened(
            state=state,
            run_id=state.run_id,
            attempt=attempt,
            previous=[CrosswalkRow(*values) for values in run.get("previous", [])],
            recorded=state.get(RECORDS),
        )
    except BaseException:
        state.close()
        raise


def _row_values(row: CrosswalkRow) -> tuple[str, str, str, str]:
    return row.table, row.source_id, row.target_id, row.target_kind


class _Migration:
    """The state of one run: the crosswalk so far, the rejects and the counters.

    ``previous`` holds an earlier finished run's crosswalk; ``done`` this run's writes (of every
    attempt, when resumed). Answers are buffered per wave and committed with :meth:`commit`.
    """

    def __init__(
        self,
        job: MigrationJob,
        progress: RunProgress,
        opened: _Opened | None = None,
    ) -> None:
        self.job = job
        self.progress = progress
        self.state = opened.state if opened else None
        self.attempt = opened.attempt if opened else 1
        self.previous: dict[Key, CrosswalkRow] = {
            (r.table, r.source_id): r for r in (opened.previous if opened else [])
        }
        self.done: dict[Key, CrosswalkRow] = {}
        self.inflight: set[Key] = set()  # sent by an earlier attempt, its answer never recorded
        for key, entry in (opened.recorded if opened else {}).items():
            table, source_id = _split_key(key)
            if entry.get("status") == "done":
                row = CrosswalkRow(table, source_id, entry["target_id"], entry["kind"])
                self.done[(table, source_id)] = row
            elif entry.get("status") == "sent":
                self.inflight.add((table, source_id))
        self.earlier = set(self.done)  # written by an earlier attempt of this run
        self.adopted = 0
        self.rejects: list[Reject] = []
        self.warnings: list[str] = []
        self.dropped_properties: list[str] = []
        self.extracted: Counter[str] = Counter()
        self.planned: Counter[str] = Counter()
        self.sent: set[Key] = set()  # planned to be written by this attempt (or dry-run planned)
        self.write_requests = 0
        self.order: dict[str, list[str]] = {}
        self.fatal: CRMError | None = None
        self._unsaved: dict[str, dict[str, Any]] = {}
        # Whether the target may hold something of this run (a recorded write, a wave sent):
        # only then is a failed new run's state worth keeping.
        self.recorded = bool(self.done or self.inflight)

    @property
    def crosswalk(self) -> dict[Key, CrosswalkRow]:
        return {**self.previous, **self.done}

    # -- bookkeeping ----------------------------------------------------------------------------
    def warn(self, message: str) -> None:
        log.warning("%s: %s", self.job.pipeline, message)
        self.warnings.append(message)

    def migrated(self, table: str, source_id: str, target_id: str, kind: str) -> None:
        self.recorded = True
        self.done[(table, source_id)] = CrosswalkRow(table, source_id, target_id, kind)
        self._unsaved[_state_key(table, source_id)] = {
            "status": "done",
            "target_id": target_id,
            "kind": kind,
        }
        self.progress.rows[table] += 1

    def refused(self, table: str, source_id: str, reason: str, *, answered: bool = True) -> None:
        """The record did not make it (its row lands in rejects as ``failed``). Unless the CRM
        ``answered`` (a refusal), the record may have arrived all the same: its state entry
        stays ``sent``, so a resumed run looks it up before sending it again."""
        self.rejects.append(Reject(table, source_id, "failed", reason))
        if answered:
            self._unsaved[_state_key(table, source_id)] = {"status": "failed", "reason": reason}

    def failed(self, table: str, source_id: str, error: CRMError) -> None:
        reason = str(error) or type(error).__name__
        answered = not isinstance(error, RetryBudgetExhausted)
        self.refused(table, source_id, reason, answered=answered)
        if isinstance(error, FATAL_ERRORS) and self.fatal is None:
            self.fatal = error

    def raise_fatal(self) -> None:
        if self.fatal is not None:
            raise self.fatal

    def mark_sent(self, writes: Sequence[PlannedWrite]) -> None:
        """Before a wave leaves: should the run die before the answers are recorded, the resumed
        run looks these records up in the target instead of sending them blind."""
        if self.state is not None:
            sent = {"status": "sent"}
            self.state.put(RECORDS, {_state_key(w.table, w.source_id): sent for w in writes})
            self.recorded = True

    def commit(self) -> None:
        """Record the answers received since the last commit (one transaction)."""
        if self.state is not None and self._unsaved:
            self.state.put(RECORDS, self._unsaved)
        self._unsaved = {}

    def stop(self, status: str) -> None:
        """Commit what arrived and mark the state (``interrupted`` or ``failed``).

        A new run that failed before recording anything leaves no state behind, so running it
        again needs no ``--resume``; an interrupted run always keeps its state.
        """
        state, self.state = self.state, None
        if state is None:
            return
        try:
            if self._unsaved:
                state.put(RECORDS, self._unsaved)
                self._unsaved = {}
            if status == "failed" and not self.job.resume and not self.recorded:
                state.discard()
                return
            state.set_status(status)
        except Exception:
            log.exception("%s: could not save the run's state", self.job.pipeline)
        state.close()

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
            written = frame["source_id"].map(lambda sid: ("contacts", sid) in self.earlier)
            if written.any():  # a resumed run: these were upserted before it stopped
                frame = frame.loc[~written.to_numpy(dtype=bool)].reset_index(drop=True)
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
            self.commit()
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
            self.refused("contacts", source_id, reason)
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
            earlier = sum(1 for t, _ in self.earlier if t == table)
            self.planned[table] = len(plan.writes) + earlier
            self.sent.update((w.table, w.source_id) for w in plan.writes)
            writes.extend(plan.writes)
        if not job.dry_run:
            writes = await self._adopt_inflight(writes, target)
        for wave in chunks(writes, RECORD_WAVE):
            self.write_requests += target.records.requests_for(len(wave))
            if job.dry_run:
                continue
            self.mark_sent(wave)
            unsure = await self._write_wave(target.records, wave)
            for _ in range(AMBIGUOUS_ROUNDS):
                if not unsure:
                    break
                unsure = await self._write_wave(target.records, await self._settle(unsure, target))
            for record in unsure:
                self.refused(
                    record.table,
                    record.source_id,
                    "the CRM's answer was lost several times; look it up before migrating again",
                    answered=False,
                )
            self.commit()
            self.raise_fatal()

    async def _write_wave(
        self, writer: RecordWriter, wave: Sequence[PlannedWrite]
    ) -> list[PlannedWrite]:
        """Send a wave; returns the records whose fate is unknown (their answer was lost)."""
        outcomes = await asyncio.gather(*(self._write_record(writer, w) for w in wave))
        return [record for record, sure in zip(wave, outcomes, strict=True) if not sure]

    async def _settle(self, unsure: list[PlannedWrite], target: _Target) -> list[PlannedWrite]:
        """Adopt the records the target holds after all; returns those to send again."""
        found = await self._adopt(unsure, target)
        return [r for r in unsure if (r.table, r.source_id) not in found]

    async def _adopt(self, unsure: list[PlannedWrite], target: _Target) -> dict[Key, str]:
        """Look ``unsure`` records up in the target; those it holds join the crosswalk."""
        claimed = {(row.target_kind, row.target_id) for row in self.crosswalk.values()}
        found = await target.records.find(unsure, claimed)
        for record in unsure:
            target_id = found.get((record.table, record.source_id))
            if target_id is not None:
                self.migrated(record.table, record.source_id, target_id, record.kind)
        self.adopted += len(found)
        return found

    async def _adopt_inflight(
        self, writes: list[PlannedWrite], target: _Target
    ) -> list[PlannedWrite]:
        """Records an earlier attempt sent without recording the answer: those the target holds
        are adopted into the crosswalk; the others are sent again."""
        unsure = [w for w in writes if (w.table, w.source_id) in self.inflight]
        if not unsure:
            return writes
        found = await self._adopt(unsure, target)
        self.commit()
        log.info(
            "%s: %d record(s) were sent before the run stopped without a recorded answer: "
            "%d found in %s and adopted, %d to send again",
            self.job.pipeline,
            len(unsure),
            len(found),
            self.job.target_crm,
            len(unsure) - len(found),
        )
        return [w for w in writes if (w.table, w.source_id) not in found]

    async def _write_record(self, writer: RecordWriter, record: PlannedWrite) -> bool:
        """Send one record; ``False`` when its answer was lost (it may or may not exist)."""
        try:
            target_id = await writer.write(record)
        except AmbiguousWriteError:
            return False
        except CRMError as exc:
            self.failed(record.table, record.source_id, exc)
            return True
        if not target_id:
            reason = "the CRM answered without an id for the new record"
            self.refused(record.table, record.source_id, reason)
            return True
        self.migrated(record.table, record.source_id, target_id, record.kind)
        return True

    # -- results -------------------------------------------------------------------------------
    def _positions(self) -> dict[Key, int]:
        return {
            (table, source_id): position
            for table, ids in self.order.items()
            for position, source_id in enumerate(ids)
        }

    def crosswalk_rows(self) -> list[CrosswalkRow]:
        """Source order within each table (contacts, activities, sales); rows whose source
        record is gone keep their earlier order after the others."""
        crosswalk = self.crosswalk
        positions = self._positions()
        keys = list(crosswalk)
        rank = {key: index for index, key in enumerate(keys)}
        tables = {name: index for index, name in enumerate(TABLES)}
        keys.sort(
            key=lambda k: (
                tables.get(k[0], len(tables)),
                k not in positions,
                positions.get(k, rank[k]),
            )
        )
        return [crosswalk[k] for k in keys]

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
        return Counter(table for table, _ in self.previous.keys() - self.sent - self.done.keys())

    def save(self, origin: CrosswalkOrigin) -> tuple[WrittenFile, WrittenFile]:
        out = self.job.out
        return (
            write_crosswalk(out, self.crosswalk_rows(), origin),
            write_rejects(out, self.sorted_rejects()),
        )


async def run_migration(job: MigrationJob, progress: RunProgress | None = None) -> RunSummary:
    """Migrate ``job.tables`` from the source CRM to the target CRM; see the module docstring.

    Raises :class:`RunInterrupted` when the retry budget runs out (the state is committed and
    the run can be resumed); on cancellation the state is committed and ``CancelledError``
    propagates.
    """
    progress = progress or RunProgress(job.pipeline)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    origin = CrosswalkOrigin(
        job.source_crm, account_name(job.source), job.target_crm, account_name(job.target)
    )
    opened = None if job.dry_run else await asyncio.to_thread(_open_state, job, origin)
    run = _Migration(job, progress, opened)
    run_id = opened.run_id if opened else job.run_id
    if opened and job.resume:
        log.info(
            "%s: resuming run %s (attempt %d): %d record(s) already written",
            job.pipeline,
            run_id,
            opened.attempt,
            len(run.done),
        )
    try:
        stats = await _migrate(job, run)
        duration = time.monotonic() - started
        manifest_path = None
        if not job.dry_run:
            crosswalk_file, rejects_file = await asyncio.to_thread(run.save, origin)
            manifest_path = await asyncio.to_thread(
                _write_manifest,
                job,
                run_id,
                crosswalk_file,
                rejects_file,
                stats,
                started_at,
                duration,
            )
        summary = _summary(job, run_id, run, stats, duration, manifest_path)
        if not job.dry_run:
            text = json.dumps(summary.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
            await asyncio.to_thread(atomic_write_bytes, job.out / SUMMARY_NAME, text.encode())
    except asyncio.CancelledError:
        run.stop("interrupted")
        raise
    except RetryBudgetExhausted as exc:
        run.stop("interrupted")
        raise RunInterrupted(job.out, f"the CRM kept failing or throttling ({exc})") from exc
    except BaseException:
        run.stop("failed")
        raise
    if run.state is not None:
        run.state.set_status("done")
        run.state.close()
    return summary


async def _migrate(job: MigrationJob, run: _Migration) -> dict[str, float]:
    """Read the source, write the target; returns both clients' statistics."""
    async with AsyncExitStack() as stack:
        source = await stack.enter_async_context(_client(job.source))
        target_client = await stack.enter_async_context(_client(job.target))
        run.progress.transports.extend([source.stats, target_client.stats])
        tables = await _extract(job, source, run.progress)
        run.extracted.update({name: table.num_rows for name, table in tables.items()})
        log.info(
            "%s: read %s from %s",
            job.pipeline,
            ", ".join(f"{n:,} {t}" for t, n in run.extracted.items()),
            job.source_crm,
        )
        target = await _open_target(target_client)
        linked, problems = await run.contacts(tables["contacts"], target)
        await run.records(tables, linked, problems, target)
        stats: Counter[str] = Counter()
        for client in (source, target_client):
            stats.update(client.stats.as_dict())
    return dict(stats)


def _write_manifest(
    job: MigrationJob,
    run_id: str,
    crosswalk_file: WrittenFile,
    rejects_file: WrittenFile,
    stats: dict[str, float],
    started_at: datetime,
    duration: float,
) -> Path:
    manifest = RunManifest(
        run_id=run_id,
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
    run_id: str,
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
        "written": _per_table(Counter(table for table, _ in run.done)),
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
        "attempt": run.attempt,
        "adopted": run.adopted,
    }
    migrated = Counter(table for table, _ in run.crosswalk)
    status = "dry-run" if job.dry_run else "partial" if sum(rejected.values()) else "ok"
    return RunSummary(
        run_id=run_id,
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
