"""Streaming, atomic writer of one table as a Hive-partitioned Parquet dataset."""

from __future__ import annotations

import contextlib
import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.load.atomic import check_name, fsync_dir, fsync_file, remove_quietly, temp_path_for
from etl.load.sink import SinkContextMixin, WrittenFile, conform

PARTITION_COLUMN = "dt"


class ParquetDatasetSink(SinkContextMixin):
    """Writes ``<root>/<table>/dt=YYYY-MM-DD/part-<run_id>-<NNNNN>.parquet``.

    Incoming batches (often one API page) are buffered and written as row groups of exactly
    ``row_group_rows`` rows (only the last group of a file may be smaller), so memory stays
    bounded by about one row group. A new part file starts after ``max_rows_per_file`` rows.
    Parts are written as hidden ``.part-....parquet.tmp`` files and all renamed into place by
    ``close()``, so readers never see a partial table. The partition value lives only in the
    directory name. ``rows_written`` counts rows accepted by ``write()``. With
    ``replace_partition`` (full snapshots), publishing also removes the parts earlier runs left in
    the same partition, so a re-run on the same day replaces that day instead of doubling it.
    """

    def __init__(
        self,
        root: Path,
        table: str,
        schema: pa.Schema,
        *,
        partition_date: date,
        run_id: str,
        row_group_rows: int = 65_536,
        max_rows_per_file: int = 1_000_000,
        compression: str = "zstd",
        replace_partition: bool = False,
    ) -> None:
        if row_group_rows < 1 or max_rows_per_file < 1:
            raise ValueError("row_group_rows and max_rows_per_file must be positive")
        if PARTITION_COLUMN in schema.names:
            raise ValueError(
                f"table {table!r}: column {PARTITION_COLUMN!r} clashes with the partition key"
            )
        self.table = check_name("table name", table)
        self.run_id = check_name("run id", run_id)
        self.schema = schema
        self.root = Path(root)
        self.row_group_rows = row_group_rows
        self.max_rows_per_file = max_rows_per_file
        self.compression = compression
        self.replace_partition = replace_partition
        self.partition = f"{PARTITION_COLUMN}={partition_date:%Y-%m-%d}"
        self.directory = self.root / table / self.partition
        self.rows_written = 0
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self._part_index = 0
        self._pending: list[tuple[Path, int]] = []  # (final path, rows), still under temp name
        self._done: list[WrittenFile] | None = None
        self._aborted = False

    def write(self, batch: pa.Table) -> None:
        self._check_open()
        batch = conform(batch, self.schema, self.table)
        if batch.num_rows == 0:
            return
        self._buffer.append(batch)
        self._buffered_rows += batch.num_rows
        self.rows_written += batch.num_rows
        try:
            self._drain(final=False)
        except BaseException:
            self.abort()
            raise

    def close(self) -> list[WrittenFile]:
        if self._done is not None:
            return list(self._done)
        self._check_open()
        published: list[Path] = []
        try:
            self._drain(final=True)
            if self._writer is not None:
                self._finish_part()
            if not self._pending:  # an empty table still gets one file carrying the schema
                self._open_part()
                self._finish_part()
            written: list[WrittenFile] = []
            for final, rows in self._pending:
                os.replace(temp_path_for(final), final)
                published.append(final)
                written.append(
                    WrittenFile(
                        table=self.table,
                        path=final.relative_to(self.root).as_posix(),
                        rows=rows,
                        bytes=final.stat().st_size,
                    )
                )
            if self.replace_partition:
                self._remove_other_parts(set(published))
            fsync_dir(self.directory)
        except BaseException:
            for final in published:  # all parts or none
                remove_quietly(final)
            self.abort()
            raise
        self._done = written
        return list(written)

    def _remove_other_parts(self, keep: set[Path]) -> None:
        """A full snapshot replaces the day's partition: earlier runs' parts of it go."""
        for part in self.directory.glob("part-*.parquet"):
            if part not in keep:
                remove_quietly(part)

    def abort(self) -> None:
        """Drop everything not yet published by ``close()``; idempotent."""
        if self._done is not None or self._aborted:
            return
        self._aborted = True
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the file is being discarded anyway
                self._writer.close()
            self._writer = None
            self._pending.append((self._part_path(self._part_index), 0))
        for final, _ in self._pending:
            remove_quietly(temp_path_for(final))
        self._pending.clear()
        self._buffer.clear()
        self._buffered_rows = 0

    def _check_open(self) -> None:
        if self._aborted:
            raise RuntimeError(f"sink for table {self.table!r} was aborted")
        if self._done is not None:
            raise RuntimeError(f"sink for table {self.table!r} is closed")

    def _drain(self, *, final: bool) -> None:
        while self._buffered_rows >= self.row_group_rows or (final and self._buffered_rows):
            room = self.max_rows_per_file - self._rows_in_file
            self._write_group(self._take(min(self.row_group_rows, room, self._buffered_rows)))

    def _take(self, n: int) -> pa.Table:
        buffered = pa.concat_tables(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        head, rest = buffered.slice(0, n), buffered.slice(n)
        self._buffer = [rest] if rest.num_rows else []
        self._buffered_rows = rest.num_rows
        return head

    def _write_group(self, group: pa.Table) -> None:
        if self._writer is None:
            self._open_part()
        assert self._writer is not None
        self._writer.write_table(group, row_group_size=group.num_rows)
        self._rows_in_file += group.num_rows
        if self._rows_in_file >= self.max_rows_per_file:
            self._finish_part()

    def _part_path(self, index: int) -> Path:
        return self.directory / f"part-{self.run_id}-{index:05d}.parquet"

    def _open_part(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = temp_path_for(self._part_path(self._part_index))
        self._writer = pq.ParquetWriter(str(temp), self.schema, compression=self.compression)
        self._rows_in_file = 0

    def _finish_part(self) -> None:
        assert self._writer is not None
        final = self._part_path(self._part_index)
        self._writer.close()
        self._writer = None
        self._pending.append((final, self._rows_in_file))
        fsync_file(temp_path_for(final))
        self._part_index += 1
        self._rows_in_file = 0
