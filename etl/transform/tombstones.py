"""Tombstone rows: how an incremental export says a record was deleted.

A tombstone has ``source``, ``source_id`` and ``deleted_at`` set and every other column null, in
the same canonical schema as the live rows, so a reader applies a delta by ``source_id``: the
latest row wins, and a row with ``deleted_at`` set removes the record.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from etl.transform import _arrow as A
from etl.transform.schemas import SCHEMAS, TIMESTAMP


def tombstones(table: str, source: str, ids: Sequence[str], deleted_at_ms: int) -> pa.Table:
    """One tombstone row per id of ``table`` (ids in the given order)."""
    n = len(ids)
    columns = {
        "source": A.constant(n, source),
        "source_id": pa.array(list(ids), pa.string()),
        "deleted_at": pa.array([deleted_at_ms] * n, pa.int64()).cast(TIMESTAMP),
    }
    return A.table(SCHEMAS[table], columns, n)
