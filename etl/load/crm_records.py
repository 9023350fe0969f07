"""CRM sinks for activities and sales: one planned write in, the new record's id out.

Each record is one API call. Callers run many at once; the client's pacing does the rate limiting
and the SalesNexus client packs concurrent calls into requests of up to 25.

Most of these writes create a record each time they are sent (SALESmanago tasks are the
exception: their ids are ours, so re-sending updates). A run that dies after sending a record and
before recording the answer cannot tell whether the record arrived; :meth:`RecordWriter.find`
looks such records up in the target by their content, so the resumed run adopts them instead of
creating them twice.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from etl.clients import SalesManagoClient, SalesNexusClient
from etl.transform.migration import PlannedWrite
from etl.transform.salesnexus import FieldCatalog

Key = tuple[str, str]  # (table, source_id)
Claimed = AbstractSet[tuple[str, str]]  # (kind, target id) already standing for another record
LISTING_PAGE = 1000


class RecordWriter(Protocol):
    kinds: frozenset[str]

    def requests_for(self, calls: int) -> int:
        """HTTP requests that ``calls`` writes sent together take."""
        ...

    async def write(self, record: PlannedWrite) -> str:
        """Send one record; returns its id in the CRM (raises ``CRMError`` when refused)."""
        ...

    async def find(self, records: Sequence[PlannedWrite], claimed: Claimed) -> dict[Key, str]:
        """Those of ``records`` the target already holds: (table, source_id) -> their id.

        A target record is adopted at most once, and never one in ``claimed``.
        """
        ...


def _adopt(
    records: Sequence[PlannedWrite],
    candidates: Mapping[str, list[tuple[str, dict[str, Any]]]],
    claimed: Claimed,
    same: Any,
) -> dict[Key, str]:
    """Match each record with the first unclaimed candidate of its contact that ``same`` accepts."""
    taken = set(claimed)
    found: dict[Key, str] = {}
    for record in records:
        for target_id, existing in candidates.get(record.contact_id, []):
            if (record.kind, target_id) not in taken and same(record, existing):
                taken.add((record.kind, target_id))
                found[(record.table, record.source_id)] = target_id
                break
    return found


class SalesManagoRecordWriter:
    """Tasks through ``contact/updateTask`` (the task id is the caller's, so re-sending updates)
    and PURCHASE events through ``contact/addContactExtEvent``."""

    kinds = frozenset({"task", "purchase"})

    def __init__(self, client: SalesManagoClient) -> None:
        self.client = client

    def requests_for(self, calls: int) -> int:
        return calls

    async def write(self, record: PlannedWrite) -> str:
        if record.kind == "task":
            return await self.client.update_task(record.payload)
        if record.kind == "purchase":
            return await self.client.add_ext_event(record.payload, contact_id=record.contact_id)
        raise ValueError(f"SALESmanago cannot write a {record.kind!r} record")

    async def find(self, records: Sequence[PlannedWrite], claimed: Claimed) -> dict[Key, str]:
        """PURCHASE events of the contact with the same type, external id and date (tasks are
        not looked up: re-sending one updates it)."""
        purchases = [r for r in records if r.kind == "purchase"]
        if not purchases:
            return {}
        contacts = await self.client.list_by_id(sorted({r.contact_id for r in purchases}))
        events = {
            str(contact.get("id")): [
                (str(event.get("eventId")), event)
                for event in contact.get("contactExtEvents") or []
                if event.get("eventId")
            ]
            for contact in contacts
        }

        def same(record: PlannedWrite, event: dict[str, Any]) -> bool:
            return all(
                event.get(key) == record.payload.get(key)
                for key in ("contactExtEventType", "externalId", "date")
            )

        return _adopt(purchases, events, claimed, same)


class SalesNexusRecordWriter:
    """``create-activity``, ``create-note`` and ``create-sales-opp``."""

    kinds = frozenset({"activity", "note", "sale"})

    def __init__(self, client: SalesNexusClient, catalog: FieldCatalog | None = None) -> None:
        self.client = client
        self.catalog = catalog

    def requests_for(self, calls: int) -> int:
        return math.ceil(calls / self.client.config.calls_per_request)

    async def write(self, record: PlannedWrite) -> str:
        if record.kind == "activity":
            return await self.client.create_activity(record.payload)
        if record.kind == "note":
            return await self.client.create_note(record.payload)
        if record.kind == "sale":
            return await self.client.create_sales_opp(record.payload)
        raise ValueError(f"SalesNexus cannot write a {record.kind!r} record")

    async def find(self, records: Sequence[PlannedWrite], claimed: Claimed) -> dict[Key, str]:
        """Notes and sales of the contact (``get-notes-for-contact``, ``get-sales-for-contact``)
        and activities listed under the contact's email, whose values equal what was sent."""
        found: dict[Key, str] = {}
        lookups = (
            ("note", self._notes),
            ("sale", self._sales),
            ("activity", self._activities),
        )
        for kind, lookup in lookups:
            mine = [r for r in records if r.kind == kind]
            if mine:
                found.update(await lookup(mine, claimed))
        return found

    async def _per_contact(
        self, function: str, ids_key: str, records_key: str, contact_ids: set[str]
    ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        async def one(contact_id: str) -> list[tuple[str, dict[str, Any]]]:
            result = await self.client.call(function, {"contact-id": contact_id}) or {}
            ids = [str(i) for i in result.get(ids_key) or []]
            return list(zip(ids, result.get(records_key) or [], strict=False))

        ordered = sorted(contact_ids)
        answers = await asyncio.gather(*(one(contact_id) for contact_id in ordered))
        return dict(zip(ordered, answers, strict=True))

    async def _notes(self, records: Sequence[PlannedWrite], claimed: Claimed) -> dict[Key, str]:
        notes = await self._per_contact(
            "get-notes-for-contact", "note-ids", "notes", {r.contact_id for r in records}
        )
        details_id = self._field_id("note", "Details")
        type_id = self._field_id("note", "Type")

        def same(record: PlannedWrite, note: dict[str, Any]) -> bool:
            wanted = (record.payload.get("details", ""), record.payload.get("type", ""))
            if details_id is None or type_id is None:  # no catalog: compare the values alone
                values = list(note.values())
                return all(value in values for value in wanted)
            return (note.get(details_id, ""), note.get(type_id, "")) == wanted

        return _adopt(records, notes, claimed, same)

    async def _sales(self, records: Sequence[PlannedWrite], claimed: Claimed) -> dict[Key, str]:
        sales = await self._per_contact(
            "get-sales-for-contact", "sales-ids", "sales", {r.contact_id for r in records}
        )

        def same(record: PlannedWrite, sale: dict[str, Any]) -> bool:
            return all(str(sale.get(k, "")) == v for k, v in record.payload.items())

        return _adopt(records, sales, claimed, same)

    async def _activities(
        self, records: Sequence[PlannedWrite], claimed: Claimed
    ) -> dict[Key, str]:
        emails = sorted({r.contact_email for r in records if r.contact_email})
        listed = await asyncio.gather(*(self._activities_of(email) for email in emails))
        activities: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        seen: set[str] = set()
        for batch in listed:
            for activity_id, activity in batch:
                if activity_id not in seen:
                    seen.add(activity_id)
                    contact = str(activity.get("schedule-with", ""))
                    activities.setdefault(contact, []).append((activity_id, activity))
        compared = ("regarding", "details", "start-time", "end-time", "type")

        def same(record: PlannedWrite, activity: dict[str, Any]) -> bool:
            return all(str(activity.get(k, "")) == str(record.payload.get(k, "")) for k in compared)

        return _adopt(records, activities, claimed, same)

    async def _activities_of(self, email: str) -> list[tuple[str, dict[str, Any]]]:
        """Activities whose contact matches ``email`` (the listing filters on contact fields)."""
        found: list[tuple[str, dict[str, Any]]] = []
        start = 0
        while True:
            page = await self.client.get_activities(start, LISTING_PAGE, filter_value=email)
            if not page.ids:
                return found
            found.extend(zip(page.ids, page.records, strict=False))
            start += len(page.ids)

    def _field_id(self, table: str, name: str) -> str | None:
        if self.catalog is None:
            return None
        try:
            return str(self.catalog.id_for(table, name))
        except KeyError:
            return None
