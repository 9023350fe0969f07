"""The run manifest: what a run wrote, and a check that the files still say so."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl.load.atomic import atomic_write_bytes, check_name
from etl.load.sink import WrittenFile

MANIFEST_NAME = "manifest.json"
RUNS_DIR = "_runs"  # leading "_": dataset readers skip it


def schema_fields(schema: pa.Schema) -> list[dict[str, str]]:
    """Name and Arrow type spelling per field, e.g. ``timestamp[ms, tz=UTC]``."""
    return [{"name": f.name, "type": str(f.type)} for f in schema]


@dataclass
class TableManifest:
    rows: int
    files: list[WrittenFile]
    schema: list[dict[str, str]]

    @classmethod
    def from_files(cls, schema: pa.Schema, files: list[WrittenFile]) -> TableManifest:
        return cls(rows=sum(f.rows for f in files), files=list(files), schema=schema_fields(schema))


@dataclass
class RunManifest:
    run_id: str
    pipeline: str
    source: str
    destination_format: str
    started_at: str  # ISO 8601 UTC
    finished_at: str  # ISO 8601 UTC
    duration_s: float
    tables: dict[str, TableManifest]
    stats: dict[str, int | float] = field(default_factory=dict)
    window: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunManifest:
        tables = {
            name: TableManifest(
                rows=int(t["rows"]),
                files=[WrittenFile(**f) for f in t["files"]],
                schema=[dict(s) for s in t["schema"]],
            )
            for name, t in data["tables"].items()
        }
        return cls(
            run_id=data["run_id"],
            pipeline=data["pipeline"],
            source=data["source"],
            destination_format=data["destination_format"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            duration_s=float(data["duration_s"]),
            tables=tables,
            stats=dict(data.get("stats") or {}),
            window=data.get("window"),
        )


def write_manifest(root: Path, manifest: RunManifest) -> Path:
    """Write ``<root>/_runs/<run_id>/manifest.json``, then replace ``<root>/manifest.json``.

    Both writes are atomic. Returns the per-run path.
    """
    root = Path(root)
    check_name("run id", manifest.run_id)
    data = (json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n").encode()
    run_path = root / RUNS_DIR / manifest.run_id / MANIFEST_NAME
    atomic_write_bytes(run_path, data)
    atomic_write_bytes(root / MANIFEST_NAME, data)
    return run_path


def read_manifest(path: Path) -> RunManifest:
    return RunManifest.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def count_rows(path: Path) -> int:
    """Rows in a Parquet file (from its footer) or a CSV file (records after the header)."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return max(sum(1 for _ in csv.reader(fh)) - 1, 0)
    raise ValueError(f"cannot count rows of {path.name}: unknown file type")


def manifest_counts_match(root: Path, manifest: RunManifest) -> list[str]:
    """Re-read every listed file; one message per disagreement, empty when all agree."""
    root = Path(root)
    problems: list[str] = []
    for name, table in manifest.tables.items():
        listed = sum(f.rows for f in table.files)
        if listed != table.rows:
            problems.append(f"{name}: table rows {table.rows} != sum of file rows {listed}")
        for file in table.files:
            if file.table != name:
                problems.append(f"{name}: {file.path} is listed under table {file.table!r}")
            path = root / file.path
            if not path.is_file():
                problems.append(f"{name}: {file.path} is missing")
                continue
            try:
                actual = count_rows(path)
            except Exception as exc:
                problems.append(f"{name}: {file.path} is unreadable: {exc}")
                continue
            if actual != file.rows:
                problems.append(f"{name}: {file.path} has {actual} rows, manifest says {file.rows}")
            size = path.stat().st_size
            if size != file.bytes:
                problems.append(f"{name}: {file.path} has {size} bytes, manifest says {file.bytes}")
    return problems
