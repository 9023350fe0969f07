"""Streaming, atomic writer of one table as a single UTF-8 CSV file per run."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from etl.load.atomic import check_name, publish, remove_quietly, temp_path_for
from etl.load.sink import SinkContextMixin, WrittenFile, conform


def _is_nested(t: pa.DataType) -> bool:
    return (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_map(t)
        or pa.types.is_struct(t)
    )


def csv_type(t: pa.DataType) -> pa.DataType:
    """The column type as written: nested values and timestamps become text."""
    if _is_nested(t) or pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_dictionary(t):
        return csv_type(t.value_type)
    return t


def _iso_utc(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    text = value.replace(tzinfo=None).isoformat(timespec="milliseconds")
    return f"{text}Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _plain(value: Any, t: pa.DataType) -> Any:
    """Python value of a nested cell with maps turned into dicts (pyarrow gives pair lists)."""
    if value is None:
        return None
    if pa.types.is_map(t):
        return {k: _plain(v, t.item_type) for k, v in value}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [_plain(v, t.value_type) for v in value]
    if pa.types.is_struct(t):
        return {f.name: _plain(value[f.name], f.type) for f in t}
    return value


def _to_json_column(column: pa.ChunkedArray) -> pa.Array:
    t = column.type
    texts = [
        None
        if value is None
        else json.dumps(
            _plain(value, t), ensure_ascii=False, separators=(",", ":"), default=_json_default
        )
        for value in column.to_pylist()
    ]
    return pa.array(texts, type=pa.string())


def _to_csv_column(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    t = column.type
    if pa.types.is_dictionary(t):
        return _to_csv_column(column.cast(t.value_type))
    if _is_nested(t):
        return _to_json_column(column)
    if pa.types.is_timestamp(t):
        utc = column.cast(pa.timestamp(t.unit, tz="UTC"))
        # For sub-second units %S includes the fraction: 09:30:00.123 for "ms".
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
    return column


class CsvSink(SinkContextMixin):
    """Writes ``<root>/<table>/<table>-<run_id>.csv`` with a header row.

    Lists, maps and structs become compact JSON text, timestamps ISO 8601 UTC with ``Z``,
    dates YYYY-MM-DD, booleans true/false, nulls empty cells. The file is written under a
    hidden temp name and renamed into place by ``close()``. ``partition_date`` is accepted
    for symmetry with the Parquet sink and not used in the path.
    """

    def __init__(
        self,
        root: Path,
        table: str,
        schema: pa.Schema,
        *,
        run_id: str,
        partition_date: date | None = None,
    ) -> None:
        self.table = check_name("table name", table)
        self.run_id = check_name("run id", run_id)
        self.schema = schema
        self.root = Path(root)
        self.partition_date = partition_date
        self.path = self.root / table / f"{table}-{run_id}.csv"
        self.csv_schema = pa.schema([pa.field(f.name, csv_type(f.type)) for f in schema])
        self.rows_written = 0
        self._writer: pacsv.CSVWriter | None = None
        self._done: list[WrittenFile] | None = None
        self._aborted = False

    def write(self, batch: pa.Table) -> None:
        self._check_open()
        batch = conform(batch, self.schema, self.table)
        if batch.num_rows == 0:
            return
        try:
            self._writer_or_open().write_table(self._to_csv_table(batch))
        except BaseException:
            self.abort()
            raise
        self.rows_written += batch.num_rows

    def close(self) -> list[WrittenFile]:
        if self._done is not None:
            return list(self._done)
        self._check_open()
        try:
            self._writer_or_open().close()  # opening here gives an empty table its header
            self._writer = None
            publish(temp_path_for(self.path), self.path)
        except BaseException:
            self.abort()
            raise
        self._done = [
            WrittenFile(
                table=self.table,
                path=self.path.relative_to(self.root).as_posix(),
                rows=self.rows_written,
                bytes=self.path.stat().st_size,
            )
        ]
        return list(self._done)

    def abort(self) -> None:
        """Drop the unpublished temp file; idempotent."""
        if self._done is not None or self._aborted:
            return
        self._aborted = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        remove_quietly(temp_path_for(self.path))

    def _check_open(self) -> None:
        if self._aborted:
            raise RuntimeError(f"sink for table {self.table!r} was aborted")
        if self._done is not None:
            raise RuntimeError(f"sink for table {self.table!r} is closed")

    def _writer_or_open(self) -> pacsv.CSVWriter:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            options = pacsv.WriteOptions(include_header=True, delimiter=",")
            self._writer = pacsv.CSVWriter(
                str(temp_path_for(self.path)), self.csv_schema, write_options=options
            )
        return self._writer

    def _to_csv_table(self, batch: pa.Table) -> pa.Table:
        columns = [_to_csv_column(batch.column(i)) for i in range(batch.num_columns)]
        return pa.Table.from_arrays(columns, schema=self.csv_schema)
