"""Streaming, atomic writer of one table as a single UTF-8 CSV file per run."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from etl.load.atomic import check_name, fsync_dir, publish, remove_quietly, temp_path_for
from etl.load.sink import SinkContextMixin, WrittenFile, conform
from etl.load.staging import StagedFile, StagingError, locate


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

    Resumable runs pass ``staging`` (a directory under ``root``): the file is written there.
    :meth:`checkpoint` flushes and fsyncs it and records its length; :meth:`resume` cuts the
    file back to that length and appends after it. See :mod:`etl.load.staging`.
    """

    def __init__(
        self,
        root: Path,
        table: str,
        schema: pa.Schema,
        *,
        run_id: str,
        partition_date: date | None = None,
        staging: Path | None = None,
    ) -> None:
        self.table = check_name("table name", table)
        self.run_id = check_name("run id", run_id)
        self.schema = schema
        self.root = Path(root)
        self.partition_date = partition_date
        self.path = self.root / table / f"{table}-{run_id}.csv"
        self.temp = (
            temp_path_for(self.path) if staging is None else Path(staging) / table / self.path.name
        )
        self.temp.relative_to(self.root)  # staged paths are recorded relative to root
        self.csv_schema = pa.schema([pa.field(f.name, csv_type(f.type)) for f in schema])
        self.rows_written = 0
        self._file: IO[bytes] | None = None
        self._writer: pacsv.CSVWriter | None = None
        self._durable: StagedFile | None = None
        self._published = False
        self._done: list[WrittenFile] | None = None
        self._aborted = False
        self._discarded = False

    def write(self, batch: pa.Table) -> None:
        self._check_open()
        batch = conform(batch, self.schema, self.table)
        if batch.num_rows == 0:
            return
        if self._published:
            raise RuntimeError(f"sink for table {self.table!r}: its file is already published")
        try:
            self._writer_or_open().write_table(self._to_csv_table(batch))
        except BaseException:
            self.suspend()
            raise
        self.rows_written += batch.num_rows

    def checkpoint(self, *, final: bool = False) -> list[StagedFile]:
        """Flush and fsync the file; ``final`` also gives an empty table its header."""
        self._check_open()
        if self._published or (self._writer is None and not final):
            return [self._durable] if self._durable is not None else []
        try:
            self._writer_or_open()
            assert self._file is not None
            self._file.flush()
            os.fsync(self._file.fileno())
            fsync_dir(self.temp.parent)
            self._durable = self._staged_file(self.rows_written, self._file.tell())
        except BaseException:
            self.suspend()
            raise
        return [self._durable]

    def resume(self, files: list[StagedFile]) -> None:
        """Adopt the checkpointed file, cut back to its recorded length."""
        self._check_open()
        if self.rows_written or self._writer is not None:
            raise RuntimeError(f"sink for table {self.table!r}: resume before writing")
        mine = [f for f in files if f.table == self.table]
        if not mine:
            remove_quietly(self.temp)
            return
        (file,) = mine
        if self._staged_file(file.rows, file.bytes) != file:
            raise StagingError(f"{file.path}: not the file of this sink ({self.table}, run id)")
        _, self._published = locate(self.root, file, may_grow=True)
        self._durable = file
        self.rows_written = file.rows
        if not self._published:
            handle = self.temp.open("r+b")
            handle.truncate(file.bytes)
            handle.seek(file.bytes)
            self._open_writer(handle, header=file.bytes == 0)

    def close(self) -> list[WrittenFile]:
        if self._done is not None:
            return list(self._done)
        self._check_open()
        try:
            if not self._published:
                self._writer_or_open().close()  # opening here gives an empty table its header
                self._writer = None
                assert self._file is not None
                self._file.close()
                self._file = None
                self.path.parent.mkdir(parents=True, exist_ok=True)
                publish(self.temp, self.path)
        except BaseException:
            self.suspend()
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

    def suspend(self) -> None:
        """Stop writing; the file stays when a checkpoint covers part of it; idempotent."""
        if self._done is not None or self._aborted:
            return
        self._aborted = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        if self._durable is None:
            remove_quietly(self.temp)

    def abort(self) -> None:
        """Drop the unpublished file, checkpointed or not; idempotent."""
        if self._done is not None or self._discarded:
            return
        self.suspend()
        self._discarded = True
        remove_quietly(self.path if self._published else self.temp)

    def _check_open(self) -> None:
        if self._aborted:
            raise RuntimeError(f"sink for table {self.table!r} was aborted")
        if self._done is not None:
            raise RuntimeError(f"sink for table {self.table!r} is closed")

    def _writer_or_open(self) -> pacsv.CSVWriter:
        if self._writer is None:
            self.temp.parent.mkdir(parents=True, exist_ok=True)
            self._open_writer(self.temp.open("wb"), header=True)
        assert self._writer is not None
        return self._writer

    def _open_writer(self, handle: IO[bytes], *, header: bool) -> None:
        self._file = handle
        options = pacsv.WriteOptions(include_header=header, delimiter=",")
        self._writer = pacsv.CSVWriter(handle, self.csv_schema, write_options=options)

    def _staged_file(self, rows: int, size: int) -> StagedFile:
        return StagedFile(
            table=self.table,
            path=self.path.relative_to(self.root).as_posix(),
            staged=self.temp.relative_to(self.root).as_posix(),
            rows=rows,
            bytes=size,
        )

    def _to_csv_table(self, batch: pa.Table) -> pa.Table:
        columns = [_to_csv_column(batch.column(i)) for i in range(batch.num_columns)]
        return pa.Table.from_arrays(columns, schema=self.csv_schema)
