"""A spill file: validated rows parked on disk between two passes, so memory stays flat.

An Arrow IPC stream written batch by batch and read back in batches of any size. Used by the
import, whose first pass must see every row (to settle duplicates) before the second writes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.load.atomic import remove_quietly


class SpillFile:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(self._sink, schema)

    def write(self, rows: pa.Table | pd.DataFrame) -> None:
        """Append rows (an Arrow table with the spill's schema, or a DataFrame converted to
        it)."""
        if not len(rows):
            return
        assert self._writer is not None, "spill file already finished"
        if isinstance(rows, pd.DataFrame):
            rows = pa.Table.from_pandas(rows, schema=self.schema, preserve_index=False)
        elif rows.schema != self.schema:
            rows = rows.select(self.schema.names).cast(self.schema)
        self._writer.write_table(rows)
        self.rows += rows.num_rows

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def batches(
        self, rows: int, *, drop: Collection[int] = (), key: str = "row"
    ) -> Iterator[tuple[pa.Table, pa.Table | None]]:
        """The spilled rows in order, ``rows`` at a time, as Arrow tables.

        Rows whose ``key`` is in ``drop`` are left out *before* the batches are cut, so every
        batch but the last is full; each comes with the rows dropped since the previous one
        (or ``None``).
        """
        self.finish()
        dropped_keys = pa.array(sorted(drop), pa.int64())
        pending: list[pa.Table] = []
        pending_rows = 0
        dropped: list[pa.Table] = []
        with pa.OSFile(str(self.path)) as source:  # not mapped: mapped pages count as RSS
            for batch in pa.ipc.open_stream(source):
                table = pa.Table.from_batches([batch])
                if len(dropped_keys):
                    is_dropped = pc.is_in(table[key], value_set=dropped_keys)
                    if pc.any(is_dropped).as_py():
                        dropped.append(table.filter(is_dropped))
                        table = table.filter(pc.invert(is_dropped))
                pending.append(table)
                pending_rows += table.num_rows
                while pending_rows >= rows:
                    whole = pa.concat_tables(pending)
                    yield whole.slice(0, rows), _concat(dropped)
                    dropped = []
                    pending = [whole.slice(rows)]
                    pending_rows = whole.num_rows - rows
            if pending_rows or dropped:
                yield pa.concat_tables(pending), _concat(dropped)

    def column_values(
        self, column: str, *, rows: Collection[int] | np.ndarray, key: str = "row"
    ) -> tuple[list[Any], list[int]]:
        """``column`` of the spilled rows whose ``key`` is in ``rows``, with their keys, in
        order (reads two columns, batch by batch)."""
        self.finish()
        wanted = pa.array(np.asarray(rows, dtype=np.int64))
        values: list[Any] = []
        keys: list[int] = []
        with pa.OSFile(str(self.path)) as source:  # not mapped: mapped pages count as RSS
            for batch in pa.ipc.open_stream(source):
                table = pa.Table.from_batches([batch]).select([key, column])
                table = table.filter(pc.is_in(table[key], value_set=wanted))
                values.extend(table[column].to_pylist())
                keys.extend(table[key].to_pylist())
        return values, keys

    def remove(self) -> None:
        self.finish()
        remove_quietly(self.path)


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(tables) if tables else None
