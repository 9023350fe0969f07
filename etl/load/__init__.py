"""Loading: streaming file sinks (Parquet dataset, CSV) and the run manifest."""

from etl.load.csv_sink import CsvSink
from etl.load.files import FileFormat, make_sink
from etl.load.manifest import (
    RunManifest,
    TableManifest,
    count_rows,
    manifest_counts_match,
    read_manifest,
    schema_fields,
    write_manifest,
)
from etl.load.parquet_sink import ParquetDatasetSink
from etl.load.sink import SchemaMismatchError, TableSink, WrittenFile
from etl.load.staging import ResumableSink, StagedFile, StagingError

__all__ = [
    "CsvSink",
    "FileFormat",
    "ParquetDatasetSink",
    "ResumableSink",
    "RunManifest",
    "SchemaMismatchError",
    "StagedFile",
    "StagingError",
    "TableManifest",
    "TableSink",
    "WrittenFile",
    "count_rows",
    "make_sink",
    "manifest_counts_match",
    "read_manifest",
    "schema_fields",
    "write_manifest",
]
