"""Sources and their streams: what each CRM yields, page by page.

A source turns one client into batches of raw records, the shape the transform layer expects:
``RawBatch(stream, records, ids)``. SALESmanago has one stream (``contacts``) whose pages carry
activities and sales inside each contact; SalesNexus has one listing per table.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from etl.clients import ContactPage, RecordPage, SalesManagoClient, SalesNexusClient
from etl.extract.prefetch import prefetch_pages


@dataclass(frozen=True)
class RawBatch:
    """One page of raw records from one stream (``ids`` parallel to records for SalesNexus)."""

    stream: str
    key: int
    records: list[dict[str, Any]]
    ids: list[str] | None = None


class SalesManagoSource:
    """One paging pass over ``contact/paginatedContactList``."""

    streams = ("contacts",)

    def __init__(self, client: SalesManagoClient, *, page_size: int = 1000, prefetch: int = 8):
        self.client = client
        self.page_size = page_size
        self.prefetch = prefetch

    async def batches(self, stream: str = "contacts", *, start: int = 0) -> AsyncIterator[RawBatch]:
        """Pages from page number ``start`` on (a resumed run passes the page after its cursor);
        a batch's ``key`` is its page number."""
        if stream != "contacts":
            raise ValueError(f"SALESmanago has no stream {stream!r}")

        async def fetch(page: int) -> ContactPage:
            return await self.client.paginated_contacts(page, self.page_size)

        pages = prefetch_pages(
            fetch,
            itertools.count(start),
            window=self.prefetch,
            is_last=lambda p: not p.has_more or not p.contacts,
        )
        async for page in pages:
            if page.contacts:
                yield RawBatch("contacts", page.page, page.contacts)


class SalesNexusSource:
    """``get-contacts``, ``get-activities`` and ``get-sales``, paged by ``start-after``.

    The client packs concurrent page calls into one HTTP request, so a prefetch window of a few
    dozen pages costs only a couple of requests per round.
    """

    streams = ("contacts", "activities", "sales")

    def __init__(self, client: SalesNexusClient, *, page_size: int = 1000, prefetch: int = 25):
        self.client = client
        self.page_size = page_size
        self.prefetch = prefetch

    async def batches(self, stream: str, *, start: int = 0) -> AsyncIterator[RawBatch]:
        """Pages from the ``start-after`` offset ``start`` on (a multiple of the page size); a
        batch's ``key`` is its offset."""
        listing = {
            "contacts": self.client.get_contacts,
            "activities": self.client.get_activities,
            "sales": self.client.get_sales,
        }.get(stream)
        if listing is None:
            raise ValueError(f"SalesNexus has no stream {stream!r}")

        async def fetch(offset: int) -> RecordPage:
            return await listing(offset, self.page_size)

        pages = prefetch_pages(
            fetch,
            itertools.count(start, self.page_size),
            window=self.prefetch,
            is_last=lambda p: len(p.ids) < self.page_size,
        )
        async for page in pages:
            if page.ids:
                yield RawBatch(stream, page.start_after, page.records, page.ids)
