"""What every file sink shares: the record of a written file, the sink protocol, batch checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import pyarrow as pa


class SchemaMismatchError(ValueError):
    """A batch does not fit the sink's declared schema."""


@dataclass(frozen=True)
class WrittenFile:
    """One published file; ``path`` is relative to the output root, posix style."""

    table: str
    path: str
    rows: int
    bytes: int


@runtime_checkable
class TableSink(Protocol):
    """Synchronous, streaming writer of one table (run from async code via ``to_thread``)."""

    rows_written: int

    def write(self, batch: pa.Table) -> None: ...

    def close(self) -> list[WrittenFile]: ...

    def abort(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...


def conform(batch: pa.Table | pa.RecordBatch, schema: pa.Schema, table: str) -> pa.Table:
    """Return ``batch`` reordered and cast to ``schema``; raise naming the offending column."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    names = set(batch.column_names)
    missing = [f.name for f in schema if f.name not in names]
    if missing:
        raise SchemaMismatchError(f"table {table!r}: batch lacks column(s) {missing}")
    extra = [n for n in batch.column_names if n not in schema.names]
    if extra:
        raise SchemaMismatchError(f"table {table!r}: batch has unexpected column(s) {extra}")
    if len(names) != batch.num_columns:
        raise SchemaMismatchError(f"table {table!r}: batch has duplicate column names")
    columns = []
    for field in schema:
        column = batch.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise SchemaMismatchError(
                    f"table {table!r}: column {field.name!r} of type {column.type} "
                    f"does not fit {field.type}: {exc}"
                ) from exc
        if not field.nullable and column.null_count:
            raise SchemaMismatchError(
                f"table {table!r}: column {field.name!r} is not nullable "
                f"but has {column.null_count} null(s)"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


class SinkContextMixin:
    """``with sink:`` closes on success and aborts on error."""

    def close(self) -> list[WrittenFile]:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
