"""A spill file: validated rows parked on disk between two passes, so memory stays flat.

An Arrow IPC stream written batch by batch and read back in batches of any size. Used by the
import, whose first pass must see every row (to settle duplicates) before the second writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from etl.load.atomic import remove_quietly


class SpillFile:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(self._sink, schema)

    def write(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        assert self._writer is not None, "spill file already finished"
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self._writer.write_table(table)
        self.rows += len(frame)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def batches(self, rows: int) -> Iterator[pd.DataFrame]:
        """The spilled rows in order, ``rows`` at a time, as pandas frames of Python objects."""
        self.finish()
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        with pa.memory_map(str(self.path)) as source:
            for batch in pa.ipc.open_stream(source):
                pending.append(batch)
                pending_rows += batch.num_rows
                while pending_rows >= rows:
                    table = pa.Table.from_batches(pending)
                    yield _to_frame(table.slice(0, rows))
                    rest = table.slice(rows)
                    pending = rest.to_batches()
                    pending_rows = rest.num_rows
            if pending_rows:
                yield _to_frame(pa.Table.from_batches(pending))

    def remove(self) -> None:
        self.finish()
        remove_quietly(self.path)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """Maps come back as dicts and lists as lists (what the CRM writers expect)."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_map(column.type):
            columns[name] = [dict(v) if v is not None else None for v in column.to_pylist()]
        else:
            columns[name] = column.to_pylist()
    return pd.DataFrame(columns)
