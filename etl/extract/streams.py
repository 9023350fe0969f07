"""Sources and their streams: what each CRM yields, page by page.

A source turns one client into batches of raw records, the shape the transform layer expects:
``RawBatch(stream, records, ids)``. SALESmanago has one stream (``contacts``) whose pages carry
activities and sales inside each contact; SalesNexus has one listing per table.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from etl.clients import ContactPage, RecordPage, SalesManagoClient, SalesNexusClient
from etl.clients.salesmanago import MAX_PAGE_SIZE, parse_response
from etl.clients.transport import RawResponse
from etl.extract.prefetch import prefetch_pages
from etl.transform import salesmanago as sm_transform
from etl.transform import salesnexus as sn_transform

PAGINATED_CONTACTS = "contact/paginatedContactList"


@dataclass(frozen=True)
class RawBatch:
    """One page of raw records from one stream (``ids`` parallel to records for SalesNexus).

    With ``arrow=True`` the sources yield records as a struct array (SALESmanago: ``RAW_CONTACT``;
    SalesNexus: string fields) where they can; the transforms take either form.
    """

    stream: str
    key: int
    records: list[dict[str, Any]] | pa.StructArray
    ids: list[str] | None = None


@dataclass(frozen=True)
class _ArrowPage:
    page: int
    contacts: list[dict[str, Any]] | pa.StructArray
    has_more: bool


def _arrow_page(page: int) -> Callable[[RawResponse], _ArrowPage]:
    """Parser of one ``paginatedContactList`` answer: straight to Arrow when the body allows
    (:func:`~etl.transform.salesmanago.decode_page`), else decoded as any other answer."""

    def parse(raw: RawResponse) -> _ArrowPage:
        if raw.status == 200:
            decoded = sm_transform.decode_page(raw.body)
            if decoded is not None:
                return _ArrowPage(page, *decoded)
        answer = parse_response(raw)
        return _ArrowPage(page, answer.get("contacts") or [], bool(answer.get("hasMore")))

    return parse


class SalesManagoSource:
    """One paging pass over ``contact/paginatedContactList``.

    ``arrow=True`` yields pages as Arrow arrays decoded straight from the answer's bytes: a
    fraction of the CPU and memory of decoded JSON (about 1 MB per 1000 contacts instead of 14).
    """

    streams = ("contacts",)

    def __init__(
        self,
        client: SalesManagoClient,
        *,
        page_size: int = 1000,
        prefetch: int = 8,
        arrow: bool = False,
    ):
        self.client = client
        self.page_size = page_size
        self.prefetch = prefetch
        self.arrow = arrow

    async def batches(self, stream: str = "contacts", *, start: int = 0) -> AsyncIterator[RawBatch]:
        """Pages from page number ``start`` on (a resumed run passes the page after its cursor);
        a batch's ``key`` is its page number."""
        if stream != "contacts":
            raise ValueError(f"SALESmanago has no stream {stream!r}")

        async def fetch(page: int) -> ContactPage | _ArrowPage:
            if not self.arrow:
                return await self.client.paginated_contacts(page, self.page_size)
            if not 1 <= self.page_size <= MAX_PAGE_SIZE:
                raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")
            body = {"owner": self.client.config.owner, "page": page, "size": self.page_size}
            return await self.client.call_with(PAGINATED_CONTACTS, body, _arrow_page(page))

        pages = prefetch_pages(
            fetch,
            itertools.count(start),
            window=self.prefetch,
            is_last=lambda p: not p.has_more or not len(p.contacts),
        )
        async for page in pages:
            if len(page.contacts):
                yield RawBatch("contacts", page.page, page.contacts)


class SalesNexusSource:
    """``get-contacts``, ``get-activities`` and ``get-sales``, paged by ``start-after``.

    The client packs concurrent page calls into one HTTP request, so a prefetch window of a few
    dozen pages costs only a couple of requests per round. ``arrow=True`` turns each page's
    records into a struct array of strings as it arrives (in a worker thread), so the window
    holds Arrow pages instead of decoded JSON (see ``salesnexus.record_array``).
    """

    streams = ("contacts", "activities", "sales")

    def __init__(
        self,
        client: SalesNexusClient,
        *,
        page_size: int = 1000,
        prefetch: int = 25,
        arrow: bool = False,
    ):
        self.client = client
        self.page_size = page_size
        self.prefetch = prefetch
        self.arrow = arrow

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
            page = await listing(offset, self.page_size)
            if not self.arrow or not page.records:
                return page
            records = await asyncio.to_thread(sn_transform.record_array, page.records)
            return replace(page, records=records)

        pages = prefetch_pages(
            fetch,
            itertools.count(start, self.page_size),
            window=self.prefetch,
            is_last=lambda p: len(p.ids) < self.page_size,
        )
        async for page in pages:
            if page.ids:
                yield RawBatch(stream, page.start_after, page.records, page.ids)
