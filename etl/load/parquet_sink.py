"""Streaming, atomic writer of one table as a Hive-partitioned Parquet dataset."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.load.atomic import check_name, fsync_dir, fsync_file, remove_quietly, temp_path_for
from etl.load.sink import SinkContextMixin, WrittenFile, conform
from etl.load.staging import StagedFile, StagingError, locate

PARTITION_COLUMN = "dt"


@dataclass
class _Part:
    """A finished part file: still staged, made durable by a checkpoint, or already published."""

    index: int
    rows: int
    bytes: int = 0
    durable: bool = False
    published: bool = False


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

    Resumable runs pass ``staging`` (a directory under ``root`` that readers skip, e.g.
    ``<root>/_runs/<run_id>/staging``): parts are written there instead of as hidden files.
    :meth:`checkpoint` ends the current part (so a part ends where the caller's page ends) and
    makes every part durable; :meth:`resume` adopts the parts of a checkpoint; :meth:`suspend`
    keeps them while dropping the rest. See :mod:`etl.load.staging`.
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
        staging: Path | None = None,
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
        self.staging = None if staging is None else Path(staging) / table / self.partition
        if self.staging is not None:
            self.staging.relative_to(self.root)  # staged paths are recorded relative to root
        self.rows_written = 0
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self._part_index = 0
        self._parts: list[_Part] = []  # finished parts, in order
        self._done: list[WrittenFile] | None = None
        self._aborted = False
        self._discarded = False

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
            self.suspend()
            raise

    def checkpoint(self, *, final: bool = False) -> list[StagedFile]:
        """End the current part and make every part durable (fsync'd file and directory).

        ``final`` also gives an empty table its one file carrying the schema. Returns every part
        of the run so far, the ones of earlier checkpoints included.
        """
        self._check_open()
        try:
            self._seal(empty_file=final)
            for part in self._parts:
                part.durable = True
            if self._parts:
                fsync_dir(self._temp(0).parent)
        except BaseException:
            self.suspend()
            raise
        return [self._staged_file(part) for part in self._parts]

    def resume(self, files: list[StagedFile]) -> None:
        """Adopt the parts a checkpoint recorded; staged parts written after it are removed."""
        self._check_open()
        if self.rows_written or self._writer is not None or self._parts:
            raise RuntimeError(f"sink for table {self.table!r}: resume before writing")
        mine = sorted((f for f in files if f.table == self.table), key=lambda f: f.path)
        for file in mine:
            _, published = locate(self.root, file)
            index = _part_index(file.path)
            if self._staged_file(_Part(index, file.rows, file.bytes)) != file:
                raise StagingError(f"{file.path}: not a part of this sink ({self.table}, run id)")
            self._parts.append(_Part(index, file.rows, file.bytes, True, published))
            self.rows_written += file.rows
        self._part_index = max((p.index for p in self._parts), default=-1) + 1
        keep = {self._temp(p.index) for p in self._parts}
        pattern = f"part-{self.run_id}-*.parquet"
        if self.staging is None:
            pattern = temp_path_for(Path(pattern)).name
        folder = self._temp(0).parent
        for stray in folder.glob(pattern) if folder.is_dir() else ():
            if stray not in keep:
                remove_quietly(stray)

    def close(self) -> list[WrittenFile]:
        if self._done is not None:
            return list(self._done)
        self._check_open()
        moved: list[_Part] = []
        try:
            self._seal(empty_file=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            written: list[WrittenFile] = []
            for part in self._parts:
                final = self._part_path(part.index)
                if not part.published:
                    os.replace(self._temp(part.index), final)
                    moved.append(part)
                written.append(
                    WrittenFile(
                        table=self.table,
                        path=final.relative_to(self.root).as_posix(),
                        rows=part.rows,
                        bytes=final.stat().st_size,
                    )
                )
            if self.replace_partition:
                self._remove_other_parts({self._part_path(p.index) for p in self._parts})
            fsync_dir(self.directory)
        except BaseException:
            for part in moved:  # all parts or none; checkpointed ones go back to staging
                final = self._part_path(part.index)
                if part.durable:
                    with contextlib.suppress(OSError):
                        os.replace(final, self._temp(part.index))
                else:
                    remove_quietly(final)
            self.suspend()
            raise
        self._done = written
        return list(written)

    def _remove_other_parts(self, keep: set[Path]) -> None:
        """A full snapshot replaces the day's partition: earlier runs' parts of it go."""
        for part in self.directory.glob("part-*.parquet"):
            if part not in keep:
                remove_quietly(part)

    def suspend(self) -> None:
        """Stop writing: drop what no checkpoint covers, keep the checkpointed parts; idempotent."""
        if self._done is not None or self._aborted:
            return
        self._aborted = True
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the file is being discarded anyway
                self._writer.close()
            self._writer = None
            remove_quietly(self._temp(self._part_index))
        for part in self._parts:
            if not part.durable:
                remove_quietly(self._temp(part.index))
        self._parts = [p for p in self._parts if p.durable]
        self._buffer.clear()
        self._buffered_rows = 0

    def abort(self) -> None:
        """Drop everything not yet published by ``close()``, checkpointed parts too; idempotent."""
        if self._done is not None or self._discarded:
            return
        self.suspend()
        self._discarded = True
        for part in self._parts:
            published = self._part_path(part.index)
            remove_quietly(published if part.published else self._temp(part.index))
        self._parts.clear()

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

    def _seal(self, *, empty_file: bool) -> None:
        """Everything buffered into the current part, and that part finished."""
        self._drain(final=True)
        if self._writer is not None:
            self._finish_part()
        if empty_file and not self._parts:  # an empty table still gets one file with the schema
            self._open_part()
            self._finish_part()

    def _part_path(self, index: int) -> Path:
        return self.directory / f"part-{self.run_id}-{index:05d}.parquet"

    def _temp(self, index: int) -> Path:
        """Where a part is written until it is published."""
        if self.staging is None:
            return temp_path_for(self._part_path(index))
        return self.staging / self._part_path(index).name

    def _staged_file(self, part: _Part) -> StagedFile:
        return StagedFile(
            table=self.table,
            path=self._part_path(part.index).relative_to(self.root).as_posix(),
            staged=self._temp(part.index).relative_to(self.root).as_posix(),
            rows=part.rows,
            bytes=part.bytes,
        )

    def _open_part(self) -> None:
        temp = self._temp(self._part_index)
        temp.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(str(temp), self.schema, compression=self.compression)
        self._rows_in_file = 0

    def _finish_part(self) -> None:
        assert self._writer is not None
        temp = self._temp(self._part_index)
        self._writer.close()
        self._writer = None
        fsync_file(temp)
        self._parts.append(_Part(self._part_index, self._rows_in_file, temp.stat().st_size))
        self._part_index += 1
        self._rows_in_file = 0


def _part_index(path: str) -> int:
    """``.../part-<run_id>-00012.parquet`` -> 12."""
    return int(path.rsplit("-", 1)[-1].split(".", 1)[0])
