"""What changed since the last run: SALESmanago change windows and SalesNexus row hashes.

SALESmanago lists the ids of contacts modified or created in a time range
(``contact/modifiedContacts``, ``contact/createdContacts``, one answer per range, no paging), so
a long range is cut into windows of bounded size and each window's contacts are fetched with
``contact/listById``. SalesNexus has no such call: every row is hashed and compared with the
hash the previous run stored.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from etl.clients import SalesManagoClient

Window = tuple[int, int]  # [from_ms, to_ms)


def plan_windows(start_ms: int, end_ms: int, max_ms: int) -> list[Window]:
    """``[start_ms, end_ms)`` cut into consecutive windows of at most ``max_ms``."""
    if max_ms < 1:
        raise ValueError("the window size must be at least 1 ms")
    windows: list[Window] = []
    lo = start_ms
    while lo < end_ms:
        hi = min(lo + max_ms, end_ms)
        windows.append((lo, hi))
        lo = hi
    return windows


async def changed_ids(client: SalesManagoClient, window: Window) -> list[str]:
    """Ids of contacts created or modified in ``window``, each once, in the order listed."""
    modified, created = await asyncio.gather(
        client.modified_contacts(*window), client.created_contacts(*window)
    )
    return list(dict.fromkeys(ref.id for ref in (*created, *modified)))


@dataclass(frozen=True)
class WindowChunk:
    """Up to ``chunk`` changed contacts of window ``index``; ``last`` ends the window."""

    index: int
    ids: list[str]
    records: list[dict[str, Any]]
    last: bool


async def window_chunks(
    client: SalesManagoClient,
    windows: list[Window],
    *,
    start: int = 0,
    chunk: int = 1000,
    skip: set[str] | None = None,
) -> AsyncIterator[WindowChunk]:
    """The contacts changed in each window from index ``start`` on, fetched by id.

    An id in ``skip`` (already exported by this run) is not fetched again; ids yielded are
    added to it. A window without changes still yields one empty, ``last`` chunk, so that its
    end can be committed. Ids unknown by the time of the fetch (deleted since) are left out by
    ``listById``; a later snapshot diff reports them.
    """
    skip = set() if skip is None else skip
    for index in range(start, len(windows)):
        ids = [i for i in await changed_ids(client, windows[index]) if i not in skip]
        skip.update(ids)
        if not ids:
            yield WindowChunk(index, [], [], last=True)
            continue
        for offset in range(0, len(ids), chunk):
            part = ids[offset : offset + chunk]
            records = await client.list_by_id(part)  # the client sends 50 ids per call
            yield WindowChunk(index, part, records, last=offset + chunk >= len(ids))


def record_hash(record: Any) -> str:
    """A short, stable digest of a raw record (keys sorted), to tell changed rows apart."""
    data = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def changed_rows(
    ids: Iterable[str], records: Iterable[Any], previous: dict[str, str]
) -> tuple[list[int], dict[str, str]]:
    """Positions of the rows that are new or differ from ``previous`` (id -> hash), and the
    hashes of every row given."""
    changed: list[int] = []
    hashes: dict[str, str] = {}
    for position, (row_id, record) in enumerate(zip(ids, records, strict=True)):
        digest = record_hash(record)
        hashes[row_id] = digest
        if previous.get(row_id) != digest:
            changed.append(position)
    return changed, hashes
