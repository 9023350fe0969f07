"""CRM sinks for activities and sales: one planned write in, the new record's id out.

Each record is one API call. Callers run many at once; the client's pacing does the rate limiting
and the SalesNexus client packs concurrent calls into requests of up to 25.
"""

from __future__ import annotations

import math
from typing import Protocol

from etl.clients import SalesManagoClient, SalesNexusClient
from etl.transform.migration import PlannedWrite


class RecordWriter(Protocol):
    kinds: frozenset[str]

    def requests_for(self, calls: int) -> int:
        """HTTP requests that ``calls`` writes sent together take."""
        ...

    async def write(self, record: PlannedWrite) -> str:
        """Send one record; returns its id in the CRM (raises ``CRMError`` when refused)."""
        ...


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


class SalesNexusRecordWriter:
    """``create-activity``, ``create-note`` and ``create-sales-opp``."""

    kinds = frozenset({"activity", "note", "sale"})

    def __init__(self, client: SalesNexusClient) -> None:
        self.client = client

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
