"""What an export reads, per CRM and mode, as phases of checkpointed units.

A phase is a set of streams read together; the next phase starts once the previous one is
written and checkpointed, so it can rely on what the run state holds (e.g. the ids listed).
Every producer starts after its stream's committed cursor, which is how a resumed run
continues: SALESmanago page numbers or window indexes, SalesNexus ``start-after`` offsets.

| mode | SALESmanago | SalesNexus |
| --- | --- | --- |
| full | ``contacts`` pages | one listing per table |
| incremental, first run | ``contacts`` pages (ids and children recorded) | listings, every row new |
| incremental | ``windows``; every ``snapshot_every`` runs ``snapshot`` then ``tombstones`` | listings (changed rows only), then ``tombstones`` |
"""  # noqa: E501

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from etl.clients import RetryBudgetExhausted, SalesManagoClient, SalesNexusClient
from etl.extract import RawBatch, SalesManagoSource, SalesNexusSource
from etl.extract.incremental import Window, changed_rows, window_chunks
from etl.pipeline.checkpoint import Built, Unit
from etl.pipeline.state import RunState
from etl.transform import FieldCatalog
from etl.transform import salesmanago as sm_transform
from etl.transform import salesnexus as sn_transform
from etl.transform.salesmanago import Records
from etl.transform.salesnexus import Records as SnRecords
from etl.transform.tombstones import tombstones

# Run-state entry namespaces.
EXPORTED = "exported"  # SALESmanago: contact id -> {child table: [ids]} written by this run
LISTED = "listed"  # SALESmanago: contact ids of this run's full listing
DELETED = "deleted"  # SALESmanago: contact ids this run wrote tombstones for
TOMBSTONES = "tombstones"  # unit token -> {table: tombstone rows}
CHILD_TABLES = ("activities", "sales")

Children = dict[str, dict[str, list[str]]]


def seen_namespace(table: str) -> str:
    """SalesNexus: row id -> hash, for every row this run's scan listed."""
    return f"seen:{table}"


@dataclass(frozen=True)
class Phase:
    streams: tuple[str, ...]
    producers: Callable[[RunState], list[AsyncIterator[Unit]]]


def _after(state: RunState, stream: str) -> int | None:
    cursor = state.cursor(stream)
    return None if cursor is None else cursor[0]


def _done(state: RunState) -> set[str]:
    return set(state.get("done"))


def _counted(tables: dict[str, pa.Table], names: Iterable[str]) -> dict[str, dict[str, int]]:
    """A ``TOMBSTONES`` entry for the tombstone rows of one unit (summed in the manifest)."""
    counts = {n: tables[n].num_rows for n in names if n in tables and tables[n].num_rows}
    return {secrets.token_hex(6): counts} if counts else {}


def _append(tables: dict[str, pa.Table], name: str, rows: pa.Table) -> None:
    tables[name] = pa.concat_tables([tables[name], rows]) if name in tables else rows


async def _grouped(batches: AsyncIterator[RawBatch], size: int) -> AsyncIterator[list[RawBatch]]:
    """Consecutive pages in groups of ``size`` (the last may be smaller): one unit of work each,
    so that Arrow's per-call overhead is paid per group, not per page. A group cut short by
    :class:`RetryBudgetExhausted` is still handed on before the error (every page read is
    written)."""
    group: list[RawBatch] = []
    async with contextlib.aclosing(batches):  # type: ignore[type-var]
        try:
            async for batch in batches:
                group.append(batch)
                if len(group) >= size:
                    yield group
                    group = []
        except RetryBudgetExhausted:
            if group:
                yield group
            raise
    if group:
        yield group


# --- SALESmanago ----------------------------------------------------------------------------


class SalesManagoPhases:
    """The phases of a SALESmanago export; ``known`` is the incremental snapshot (if any)."""

    source_name = "salesmanago"

    def __init__(
        self,
        client: SalesManagoClient,
        *,
        tables: Sequence[str],
        page_size: int,
        prefetch: int,
        plan: dict[str, Any],
        known: Children | None = None,
        pages_per_unit: int = 1,
    ) -> None:
        self.client = client
        self.pages_per_unit = pages_per_unit
        self.tables = tuple(tables)
        self.children_tables = tuple(t for t in CHILD_TABLES if t in self.tables)
        self.page_size = page_size
        self.source = SalesManagoSource(client, page_size=page_size, prefetch=prefetch, arrow=True)
        self.plan = plan
        self.known: Children = known or {}
        self.deleted_at = int(plan["started_ms"])

    def phases(self) -> list[Phase]:
        plan = self.plan
        if plan["mode"] == "full" or plan.get("baseline"):
            track = plan["mode"] == "incremental"
            return [Phase(("contacts",), lambda state: [self._pages(state, track=track)])]
        phases = [Phase(("windows",), lambda state: [self._windows(state)])]
        if plan.get("snapshot"):
            phases.append(Phase(("snapshot",), lambda state: [self._listing(state)]))
            phases.append(Phase(("tombstones",), lambda state: [self._deletions(state)]))
        return phases

    # -- producers --------------------------------------------------------------------------
    async def _pages(self, state: RunState, *, track: bool) -> AsyncIterator[Unit]:
        after = _after(state, "contacts")
        start = 0 if after is None else after + 1
        batches = self.source.batches("contacts", start=start)
        async for group in _grouped(batches, self.pages_per_unit):
            build = partial(self._build_page, [b.records for b in group], track)
            yield Unit("contacts", group[-1].key, build, pages=len(group))

    async def _windows(self, state: RunState) -> AsyncIterator[Unit]:
        windows: list[Window] = [(int(a), int(b)) for a, b in self.plan["windows"]]
        after = _after(state, "windows")
        exported = set(state.get(EXPORTED))
        chunks = window_chunks(
            self.client,
            windows,
            start=0 if after is None else after + 1,
            chunk=self.page_size,
            skip=exported,
        )
        async for chunk in chunks:
            # A window's cursor moves once all of it is written; a resumed run re-reads the
            # window's ids and skips those already exported.
            position = chunk.index if chunk.last else chunk.index - 1
            build = partial(self._build_changed, chunk.records)
            yield Unit("windows", position, build, boundary=chunk.last)

    async def _listing(self, state: RunState) -> AsyncIterator[Unit]:
        seen = set(self.known) | set(state.get(EXPORTED))
        after = _after(state, "snapshot")
        start = 0 if after is None else after + 1
        batches = self.source.batches("contacts", start=start)
        async for group in _grouped(batches, self.pages_per_unit):
            build = partial(self._build_listing, [b.records for b in group], seen)
            yield Unit("snapshot", group[-1].key, build, pages=len(group))

    async def _deletions(self, state: RunState) -> AsyncIterator[Unit]:
        build = partial(self._build_deletions, state.get(LISTED), state.get(EXPORTED))
        yield Unit("tombstones", 0, build, boundary=True)

    # -- builders (worker threads) -------------------------------------------------------------
    def _split(self, records: Records, page_of: np.ndarray | None = None) -> dict[str, pa.Table]:
        return sm_transform.split_page(records, self.tables, page_of) if len(records) else {}

    def _children(self, records: Records, tables: dict[str, pa.Table]) -> Children:
        children: Children = {
            cid: {t: [] for t in self.children_tables} for cid in sm_transform.contact_ids(records)
        }
        for name in self.children_tables:
            table = tables.get(name)
            if table is None:
                continue
            owners = table.column("contact_id").to_pylist()
            for owner, child in zip(owners, table.column("source_id").to_pylist(), strict=True):
                if owner in children:
                    children[owner][name].append(child)
        return children

    def _build_page(self, pages: list[Records], track: bool) -> Built:
        records, page_of = sm_transform.concat_pages(pages)
        tables = self._split(records, page_of)
        return Built(tables, {EXPORTED: self._children(records, tables)} if track else {})

    def _build_changed(self, records: list[dict[str, Any]]) -> Built:
        """Changed contacts; children they no longer have become tombstones."""
        tables = self._split(records)
        children = self._children(records, tables)
        removed: dict[str, int] = {}
        for name in self.children_tables:
            gone: list[str] = []
            for contact_id, now in children.items():
                before = self.known.get(contact_id, {}).get(name, [])
                if before:
                    still = set(now[name])
                    gone.extend(child for child in before if child not in still)
            if gone:
                _append(tables, name, tombstones(name, self.source_name, gone, self.deleted_at))
                removed[name] = len(gone)
        entries: dict[str, dict[str, Any]] = {EXPORTED: children}
        if removed:
            entries[TOMBSTONES] = {secrets.token_hex(6): removed}
        return Built(tables, entries)

    def _build_listing(self, pages: list[Records], seen: set[str]) -> Built:
        """Pages of the snapshot listing: ids recorded; contacts never seen are exported."""
        records, page_of = sm_transform.concat_pages(pages)
        ids = sm_transform.contact_ids(records)
        keep = np.array([i not in seen for i in ids], dtype=bool)
        unseen = records.filter(pa.array(keep, pa.bool_()))
        tables = self._split(unseen, page_of[keep])
        entries: dict[str, dict[str, Any]] = {LISTED: dict.fromkeys(ids, 1)}
        if len(unseen):
            entries[EXPORTED] = self._children(unseen, tables)
        return Built(tables, entries)

    def _build_deletions(self, listed: dict[str, Any], exported: Children) -> Built:
        """Known contacts missing from the listing: tombstones for them and their children."""
        candidates = dict.fromkeys([*self.known, *exported])
        deleted = [cid for cid in candidates if cid not in listed]
        tables: dict[str, pa.Table] = {}
        if deleted and "contacts" in self.tables:
            tables["contacts"] = tombstones("contacts", self.source_name, deleted, self.deleted_at)
        for name in self.children_tables:
            ids = [
                child
                for cid in deleted
                for child in (exported.get(cid) or self.known.get(cid) or {}).get(name, [])
            ]
            if ids:
                tables[name] = tombstones(name, self.source_name, ids, self.deleted_at)
        entries = {DELETED: dict.fromkeys(deleted, 1), TOMBSTONES: _counted(tables, tables)}
        return Built(tables, entries)


# --- SalesNexus -----------------------------------------------------------------------------


class SalesNexusPhases:
    """The phases of a SalesNexus export; ``previous`` holds the last run's row hashes."""

    source_name = "salesnexus"

    def __init__(
        self,
        client: SalesNexusClient,
        catalog: FieldCatalog,
        *,
        tables: Sequence[str],
        page_size: int,
        prefetch: int,
        plan: dict[str, Any],
        previous: dict[str, dict[str, str]] | None = None,
        pages_per_unit: int = 1,
    ) -> None:
        self.catalog = catalog
        self.pages_per_unit = pages_per_unit
        self.tables = tuple(tables)
        self.page_size = page_size
        self.plan = plan
        self.incremental = plan["mode"] == "incremental"
        # incremental runs hash the decoded records (changed_rows), full runs go Arrow early
        self.source = SalesNexusSource(
            client, page_size=page_size, prefetch=prefetch, arrow=not self.incremental
        )
        self.previous = previous or {t: {} for t in self.tables}
        self.deleted_at = int(plan["started_ms"])

    def phases(self) -> list[Phase]:
        phases = [Phase(self.tables, self._listings)]
        if self.incremental:
            phases.append(Phase(("tombstones",), lambda state: [self._deletions(state)]))
        return phases

    def _listings(self, state: RunState) -> list[AsyncIterator[Unit]]:
        done = _done(state)
        return [self._pages(state, table) for table in self.tables if table not in done]

    async def _pages(self, state: RunState, table: str) -> AsyncIterator[Unit]:
        after = _after(state, table)
        start = 0 if after is None else after + self.page_size
        batches = self.source.batches(table, start=start)
        async for group in _grouped(batches, self.pages_per_unit):
            ids = [i for b in group for i in b.ids or []]
            build = partial(self._build_page, table, ids, [b.records for b in group])
            yield Unit(table, group[-1].key, build, pages=len(group))

    async def _deletions(self, state: RunState) -> AsyncIterator[Unit]:
        seen = {t: state.get(seen_namespace(t)) for t in self.tables}
        yield Unit("tombstones", 0, partial(self._build_deletions, seen), boundary=True)

    def _table(self, table: str, ids: list[str], records: SnRecords) -> pa.Table:
        if table == "contacts":
            return sn_transform.contacts_table(ids, records, self.catalog)
        if table == "activities":
            return sn_transform.activities_table(ids, records)
        return sn_transform.sales_table(ids, records, self.catalog)

    def _build_page(self, table: str, ids: list[str], pages: list[SnRecords]) -> Built:
        records = sn_transform.concat_records(pages)
        if not self.incremental:
            return Built({table: self._table(table, ids, records)})
        changed, hashes = changed_rows(ids, records, self.previous[table])
        rows = self._table(table, [ids[i] for i in changed], [records[i] for i in changed])
        return Built({table: rows}, {seen_namespace(table): hashes})

    def _build_deletions(self, seen: dict[str, dict[str, Any]]) -> Built:
        tables: dict[str, pa.Table] = {}
        for table in self.tables:
            gone = [i for i in self.previous[table] if i not in seen[table]]
            if gone:
                tables[table] = tombstones(table, self.source_name, gone, self.deleted_at)
        return Built(tables, {TOMBSTONES: _counted(tables, tables)})
