"""File sinks: pick one by output format."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import pyarrow as pa

from etl.load.csv_sink import CsvSink
from etl.load.parquet_sink import ParquetDatasetSink
from etl.load.sink import SchemaMismatchError, TableSink, WrittenFile

FileFormat = Literal["parquet", "csv"]

__all__ = [
    "CsvSink",
    "FileFormat",
    "ParquetDatasetSink",
    "SchemaMismatchError",
    "TableSink",
    "WrittenFile",
    "make_sink",
]


def make_sink(
    fmt: FileFormat,
    root: Path,
    table: str,
    schema: pa.Schema,
    *,
    partition_date: date,
    run_id: str,
    replace_partition: bool = False,
    staging: Path | None = None,
) -> ParquetDatasetSink | CsvSink:
    """A sink writing ``table`` under ``root`` in ``fmt`` (staged under ``staging`` if given)."""
    if fmt == "parquet":
        return ParquetDatasetSink(
            root,
            table,
            schema,
            partition_date=partition_date,
            run_id=run_id,
            replace_partition=replace_partition,
            staging=staging,
        )
    if fmt == "csv":
        return CsvSink(
            root, table, schema, run_id=run_id, partition_date=partition_date, staging=staging
        )
    raise ValueError(f"unknown output format {fmt!r}; expected 'parquet' or 'csv'")
