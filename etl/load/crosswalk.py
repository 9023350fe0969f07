"""The migration's record of what moved where: ``crosswalk.parquet`` and ``rejects.csv``.

The crosswalk maps each migrated source record to its id in the target (``table``, ``source_id``,
``target_id``, ``target_kind``). Its Parquet metadata names the two CRMs and accounts, so a
re-run into another account does not mistake this account's rows for its own. Both files are
replaced atomically: a reader sees the previous file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.load.atomic import atomic_write_bytes
from etl.load.sink import WrittenFile
from etl.transform.migration import Reject

CROSSWALK_NAME = "crosswalk.parquet"
REJECTS_NAME = "rejects.csv"
REJECT_COLUMNS = ("table", "source_id", "status", "reason")
_METADATA_KEY = b"crm_etl.crosswalk"

CROSSWALK_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("target_id", pa.string(), nullable=False),
        pa.field("target_kind", pa.string(), nullable=False),
    ]
)
REJECTS_SCHEMA = pa.schema([pa.field(name, pa.string()) for name in REJECT_COLUMNS])


class CrosswalkMismatchError(ValueError):
    """The crosswalk on disk belongs to another migration (other CRMs or accounts)."""


@dataclass(frozen=True)
class CrosswalkOrigin:
    """Which migration a crosswalk belongs to (account names, never credentials)."""

    source_crm: str
    source_account: str
    target_crm: str
    target_account: str


@dataclass(frozen=True)
class CrosswalkRow:
    table: str
    source_id: str
    target_id: str
    target_kind: str


def read_crosswalk(path: Path, origin: CrosswalkOrigin) -> list[CrosswalkRow]:
    """The rows of an earlier run's crosswalk (none if there is no file)."""
    if not path.is_file():
        return []
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    if raw is None:
        raise CrosswalkMismatchError(f"{path} was not written by a crm-etl migration")
    written = CrosswalkOrigin(**json.loads(raw))
    if written != origin:
        raise CrosswalkMismatchError(
            f"{path} belongs to the migration {_describe(written)}, not to "
            f"{_describe(origin)}; use another output directory"
        )
    missing = [name for name in CROSSWALK_SCHEMA.names if name not in table.column_names]
    if missing:
        raise CrosswalkMismatchError(f"{path} lacks the column(s) {missing}")
    columns = [table.column(name).to_pylist() for name in CROSSWALK_SCHEMA.names]
    return [CrosswalkRow(*values) for values in zip(*columns, strict=True)]


def _describe(origin: CrosswalkOrigin) -> str:
    return (
        f"{origin.source_crm} ({origin.source_account}) -> "
        f"{origin.target_crm} ({origin.target_account})"
    )


def write_crosswalk(
    out: Path, rows: Iterable[CrosswalkRow], origin: CrosswalkOrigin
) -> WrittenFile:
    """Replace ``<out>/crosswalk.parquet`` atomically."""
    rows = list(rows)
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=CROSSWALK_SCHEMA)
    table = table.replace_schema_metadata({_METADATA_KEY: json.dumps(asdict(origin)).encode()})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue().to_pybytes()
    atomic_write_bytes(out / CROSSWALK_NAME, data)
    return WrittenFile("crosswalk", CROSSWALK_NAME, len(rows), len(data))


def write_rejects(out: Path, rejects: Iterable[Reject]) -> WrittenFile:
    """Replace ``<out>/rejects.csv`` (table, source_id, status, reason) atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(REJECT_COLUMNS)
    count = 0
    for reject in rejects:
        writer.writerow([reject.table, reject.source_id, reject.status, reject.reason])
        count += 1
    data = text.getvalue().encode("utf-8")
    atomic_write_bytes(out / REJECTS_NAME, data)
    return WrittenFile("rejects", REJECTS_NAME, count, len(data))
