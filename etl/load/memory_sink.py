"""A table sink that keeps its batches in memory, for runs that need a whole table before loading.

The migration extracts with the export's pipeline and then needs every contact before it can link
activities and sales; Arrow batches are compact, so holding an account's tables is affordable.
"""

from __future__ import annotations

from typing import Self

import pyarrow as pa

from etl.load.sink import WrittenFile, conform


class MemorySink:
    """Collects batches of one schema; :meth:`table` concatenates them (zero-copy)."""

    def __init__(self, name: str, schema: pa.Schema) -> None:
        self.name = name
        self.schema = schema
        self.rows_written = 0
        self._batches: list[pa.Table] = []

    def write(self, batch: pa.Table) -> None:
        table = conform(batch, self.schema, self.name)
        self._batches.append(table)
        self.rows_written += table.num_rows

    def table(self) -> pa.Table:
        if not self._batches:
            return self.schema.empty_table()
        return pa.concat_tables(self._batches)

    def close(self) -> list[WrittenFile]:
        return []

    def abort(self) -> None:
        self._batches.clear()
        self.rows_written = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
