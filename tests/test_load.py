"""File sinks and run manifest: streaming layout, round trips, atomicity, count checks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from etl.clients import SalesManagoClient, SalesNexusClient
from etl.load import (
    CsvSink,
    ParquetDatasetSink,
    RunManifest,
    SchemaMismatchError,
    TableManifest,
    TableSink,
    WrittenFile,
    count_rows,
    make_sink,
    manifest_counts_match,
    read_manifest,
    write_manifest,
)
from etl.load.contact_payloads import salesmanago_entries
from etl.load.crm_contacts import SalesManagoContactWriter, SalesNexusContactWriter
from etl.sandbox import SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from etl.transform.salesnexus import FieldCatalog
from tests.support import sm_config, sn_config

DAY = date(2026, 11, 23)
SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("score", pa.int64()),
        pa.field("amount", pa.float64()),
        pa.field("opted_out", pa.bool_()),
        pa.field("birthday", pa.date32()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("created_at", pa.timestamp("ms", tz="UTC")),
        pa.field("properties", pa.map_(pa.string(), pa.string())),
    ]
)
SIMPLE = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])


def simple_batch(start: int, n: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({"id": ids, "v": [f"v{i}" for i in ids]}, schema=SIMPLE)


def rich_rows() -> list[dict]:
    return [
        {
            "source": "salesmanago",
            "source_id": "1",
            "name": "Zażółć gęślą jaźń 日本 🚀",
            "score": 10,
            "amount": 1234.5,
            "opted_out": True,
            "birthday": date(1990, 2, 3),
            "tags": ["vip", "nowy, klient"],
            "created_at": datetime(2026, 11, 23, 9, 30, 0, 123000, tzinfo=UTC),
            "properties": [("tier", "gold"), ("źródło", 'a "quoted"\nvalue')],
        },
        {
            "source": "salesnexus",
            "source_id": "2",
            "name": 'Smith, "Jr."\nline two',
            "score": None,
            "amount": None,
            "opted_out": False,
            "birthday": None,
            "tags": [],
            "created_at": datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC),
            "properties": [],
        },
        {
            "source": "salesnexus",
            "source_id": "3",
            "name": None,
            "score": -5,
            "amount": 0.25,
            "opted_out": None,
            "birthday": date(2000, 12, 31),
            "tags": None,
            "created_at": None,
            "properties": None,
        },
    ]


def rich_table() -> pa.Table:
    return pa.Table.from_pylist(rich_rows(), schema=SCHEMA)


def all_files(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


# --- Parquet -------------------------------------------------------------------------------


def test_small_batches_become_fixed_size_row_groups(tmp_path: Path) -> None:
    sink = ParquetDatasetSink(
        tmp_path, "contacts", SIMPLE, partition_date=DAY, run_id="r1", row_group_rows=100
    )
    for i in range(35):
        sink.write(simple_batch(i * 7, 7))
    assert sink.rows_written == 245
    files = sink.close()

    path = tmp_path / "contacts" / "dt=2026-11-23" / "part-r1-00000.parquet"
    assert files == [
        WrittenFile(
            table="contacts",
            path="contacts/dt=2026-11-23/part-r1-00000.parquet",
            rows=245,
            bytes=path.stat().st_size,
        )
    ]
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100, 100, 45]
    assert pq.ParquetFile(path).schema_arrow.names == ["id", "v"]  # no dt column inside files
    assert pq.read_table(path).column("id").to_pylist() == list(range(245))
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_rolls_to_new_part_after_max_rows(tmp_path: Path) -> None:
    sink = ParquetDatasetSink(
        tmp_path,
        "sales",
        SIMPLE,
        partition_date=DAY,
        run_id="r2",
        row_group_rows=40,
        max_rows_per_file=100,
    )
    for i in range(0, 250, 30):
        sink.write(simple_batch(i, min(30, 250 - i)))
    files = sink.close()

    assert [(f.path, f.rows) for f in files] == [
        ("sales/dt=2026-11-23/part-r2-00000.parquet", 100),
        ("sales/dt=2026-11-23/part-r2-00001.parquet", 100),
        ("sales/dt=2026-11-23/part-r2-00002.parquet", 50),
    ]
    groups = []
    ids: list[int] = []
    for f in files:
        pf = pq.ParquetFile(tmp_path / f.path)
        groups.append([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
        ids += pf.read().column("id").to_pylist()
    assert groups == [[40, 40, 20], [40, 40, 20], [40, 10]]
    assert ids == list(range(250))
    assert all_files(tmp_path) == [f.path for f in files]


def test_dataset_reads_back_with_arrow_and_pandas(tmp_path: Path) -> None:
    expected = rich_table()
    sink = ParquetDatasetSink(
        tmp_path, "contacts", SCHEMA, partition_date=DAY, run_id="r3", row_group_rows=2
    )
    for i in range(expected.num_rows):  # one-row "pages"
        sink.write(expected.slice(i, 1))
    sink.close()

    dataset = ds.dataset(tmp_path / "contacts", partitioning="hive")
    got = dataset.to_table().sort_by("source_id")
    assert got.schema.names == [*SCHEMA.names, "dt"]
    assert got.column("dt").to_pylist() == ["2026-11-23"] * 3
    assert got.drop_columns(["dt"]).cast(SCHEMA).to_pylist() == expected.to_pylist()
    assert got.drop_columns(["dt"]).schema.equals(SCHEMA)

    frame = pd.read_parquet(tmp_path / "contacts").sort_values("source_id")
    assert list(frame.columns) == [*SCHEMA.names, "dt"]
    assert frame["dt"].astype(str).tolist() == ["2026-11-23"] * 3
    assert frame["name"].tolist()[:2] == ["Zażółć gęślą jaźń 日本 🚀", 'Smith, "Jr."\nline two']
    assert pd.isna(frame["name"].iloc[2])
    assert frame["score"].tolist()[0] == 10 and frame["score"].tolist()[2] == -5
    assert [list(t) if t is not None else None for t in frame["tags"]] == [
        ["vip", "nowy, klient"],
        [],
        None,
    ]
    assert [list(p) if p is not None else None for p in frame["properties"]] == [
        [("tier", "gold"), ("źródło", 'a "quoted"\nvalue')],
        [],
        None,
    ]
    assert frame["created_at"].iloc[0] == pd.Timestamp("2026-11-23T09:30:00.123Z")
    assert pd.isna(frame["created_at"].iloc[2])


def test_parquet_nothing_visible_before_close_and_abort_leaves_nothing(tmp_path: Path) -> None:
    sink = ParquetDatasetSink(
        tmp_path,
        "contacts",
        SIMPLE,
        partition_date=DAY,
        run_id="r4",
        row_group_rows=10,
        max_rows_per_file=20,
    )
    sink.write(simple_batch(0, 50))  # two finished parts, one open part
    part_dir = tmp_path / "contacts" / "dt=2026-11-23"
    assert all_files(part_dir) == [
        ".part-r4-00000.parquet.tmp",
        ".part-r4-00001.parquet.tmp",
        ".part-r4-00002.parquet.tmp",
    ]
    assert ds.dataset(tmp_path / "contacts", partitioning="hive").files == []

    sink.abort()
    assert all_files(tmp_path) == []
    sink.abort()  # idempotent
    with pytest.raises(RuntimeError, match="aborted"):
        sink.write(simple_batch(0, 1))


def test_parquet_closed_parts_appear_together(tmp_path: Path) -> None:
    sink = ParquetDatasetSink(
        tmp_path, "t", SIMPLE, partition_date=DAY, run_id="r5", max_rows_per_file=3
    )
    sink.write(simple_batch(0, 7))
    assert [p for p in all_files(tmp_path) if not p.split("/")[-1].startswith(".")] == []
    files = sink.close()
    assert all_files(tmp_path) == [
        "t/dt=2026-11-23/part-r5-00000.parquet",
        "t/dt=2026-11-23/part-r5-00001.parquet",
        "t/dt=2026-11-23/part-r5-00002.parquet",
    ]
    assert [f.rows for f in files] == [3, 3, 1]
    assert sink.close() == files  # idempotent
    sink.abort()  # no-op after close
    assert len(all_files(tmp_path)) == 3
    with pytest.raises(RuntimeError, match="closed"):
        sink.write(simple_batch(0, 1))


def test_parquet_empty_table_has_schema(tmp_path: Path) -> None:
    sink = ParquetDatasetSink(tmp_path, "contacts", SCHEMA, partition_date=DAY, run_id="r6")
    sink.write(rich_table().slice(0, 0))
    files = sink.close()
    assert [(f.path, f.rows) for f in files] == [
        ("contacts/dt=2026-11-23/part-r6-00000.parquet", 0)
    ]
    assert pq.ParquetFile(tmp_path / files[0].path).schema_arrow.equals(SCHEMA)
    got = ds.dataset(tmp_path / "contacts", partitioning="hive").to_table()
    assert got.num_rows == 0
    assert got.schema.names == [*SCHEMA.names, "dt"]
    assert pd.read_parquet(tmp_path / "contacts").shape == (0, len(SCHEMA) + 1)


def test_batches_are_cast_and_mismatches_name_the_column(tmp_path: Path) -> None:
    sink = ParquetDatasetSink(tmp_path, "t", SIMPLE, partition_date=DAY, run_id="r7")
    # reordered columns and a narrower int type are accepted
    sink.write(pa.table({"v": ["a"], "id": pa.array([1], pa.int32())}))
    with pytest.raises(SchemaMismatchError, match=r"column 'id' of type string does not fit int64"):
        sink.write(pa.table({"id": ["x"], "v": ["a"]}))
    sink = ParquetDatasetSink(tmp_path, "u", SIMPLE, partition_date=DAY, run_id="r7")
    with pytest.raises(SchemaMismatchError, match=r"lacks column\(s\) \['v'\]"):
        sink.write(pa.table({"id": [1]}))
    with pytest.raises(SchemaMismatchError, match=r"unexpected column\(s\) \['extra'\]"):
        sink.write(pa.table({"id": [1], "v": ["a"], "extra": [1]}))
    with pytest.raises(SchemaMismatchError, match=r"column 'id' is not nullable but has 1 null"):
        sink.write(pa.table({"id": pa.array([None], pa.int64()), "v": ["a"]}))
    files = sink.close()
    assert pq.read_table(tmp_path / files[0].path).num_rows == 0


def test_rejects_unsafe_names_and_partition_clash(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid run id"):
        ParquetDatasetSink(tmp_path, "t", SIMPLE, partition_date=DAY, run_id="../x")
    with pytest.raises(ValueError, match="invalid table name"):
        CsvSink(tmp_path, ".hidden", SIMPLE, run_id="r")
    with pytest.raises(ValueError, match="clashes with the partition key"):
        ParquetDatasetSink(
            tmp_path, "t", pa.schema([("dt", pa.string())]), partition_date=DAY, run_id="r"
        )


# --- CSV -----------------------------------------------------------------------------------


def test_csv_content_reads_back_exactly(tmp_path: Path) -> None:
    table = rich_table()
    sink = CsvSink(tmp_path, "contacts", SCHEMA, run_id="r8", partition_date=DAY)
    sink.write(table.slice(0, 2))
    sink.write(table.slice(2))
    files = sink.close()
    path = tmp_path / "contacts" / "contacts-r8.csv"
    assert files == [
        WrittenFile(
            table="contacts",
            path="contacts/contacts-r8.csv",
            rows=3,
            bytes=path.stat().st_size,
        )
    ]
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(f'"{n}"' for n in SCHEMA.names)

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    assert list(frame.columns) == SCHEMA.names
    assert frame.to_dict("records") == [
        {
            "source": "salesmanago",
            "source_id": "1",
            "name": "Zażółć gęślą jaźń 日本 🚀",
            "score": "10",
            "amount": "1234.5",
            "opted_out": "true",
            "birthday": "1990-02-03",
            "tags": '["vip","nowy, klient"]',
            "created_at": "2026-11-23T09:30:00.123Z",
            "properties": '{"tier":"gold","źródło":"a \\"quoted\\"\\nvalue"}',
        },
        {
            "source": "salesnexus",
            "source_id": "2",
            "name": 'Smith, "Jr."\nline two',
            "score": "",
            "amount": "",
            "opted_out": "false",
            "birthday": "",
            "tags": "[]",
            "created_at": "2026-01-01T00:00:00.000Z",
            "properties": "{}",
        },
        {
            "source": "salesnexus",
            "source_id": "3",
            "name": "",
            "score": "-5",
            "amount": "0.25",
            "opted_out": "",
            "birthday": "2000-12-31",
            "tags": "",
            "created_at": "",
            "properties": "",
        },
    ]
    assert json.loads(frame["properties"][0]) == {"tier": "gold", "źródło": 'a "quoted"\nvalue'}
    assert count_rows(path) == 3


def test_csv_nested_timestamps_and_other_timezones(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            ("at", pa.timestamp("s", tz="Europe/Warsaw")),
            (
                "events",
                pa.list_(pa.struct([("at", pa.timestamp("ms", tz="UTC")), ("n", pa.int64())])),
            ),
        ]
    )
    table = pa.table(
        {
            "at": pa.array(
                [datetime(2026, 11, 23, 9, 30, tzinfo=UTC)], pa.timestamp("s", tz="UTC")
            ),
            "events": [[{"at": datetime(2026, 11, 23, 9, 30, 0, 5000, tzinfo=UTC), "n": 1}]],
        }
    )
    sink = CsvSink(tmp_path, "ev", schema, run_id="r9")
    sink.write(table)
    sink.close()
    frame = pd.read_csv(tmp_path / "ev" / "ev-r9.csv", dtype=str)
    assert frame.to_dict("records") == [
        {"at": "2026-11-23T09:30:00Z", "events": '[{"at":"2026-11-23T09:30:00.005Z","n":1}]'}
    ]


def test_csv_nothing_visible_before_close_abort_and_empty(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path, "t", SIMPLE, run_id="r10")
    sink.write(simple_batch(0, 5))
    assert all_files(tmp_path) == ["t/.t-r10.csv.tmp"]
    sink.abort()
    assert all_files(tmp_path) == []

    empty = CsvSink(tmp_path, "t", SIMPLE, run_id="r11")
    files = empty.close()
    assert [(f.path, f.rows) for f in files] == [("t/t-r11.csv", 0)]
    assert (tmp_path / "t" / "t-r11.csv").read_text(encoding="utf-8") == '"id","v"\n'
    assert count_rows(tmp_path / "t" / "t-r11.csv") == 0


def test_make_sink_picks_the_format(tmp_path: Path) -> None:
    parquet = make_sink("parquet", tmp_path, "t", SIMPLE, partition_date=DAY, run_id="r")
    csv = make_sink("csv", tmp_path, "t", SIMPLE, partition_date=DAY, run_id="r")
    assert isinstance(parquet, ParquetDatasetSink) and isinstance(parquet, TableSink)
    assert isinstance(csv, CsvSink) and isinstance(csv, TableSink)
    with pytest.raises(ValueError, match="unknown output format 'json'"):
        make_sink("json", tmp_path, "t", SIMPLE, partition_date=DAY, run_id="r")  # type: ignore[arg-type]
    with make_sink("csv", tmp_path, "w", SIMPLE, partition_date=DAY, run_id="r") as sink:
        sink.write(simple_batch(0, 2))
    assert all_files(tmp_path) == ["w/w-r.csv"]


# --- Manifest ------------------------------------------------------------------------------


def build_run(tmp_path: Path, run_id: str) -> RunManifest:
    tables = {}
    with ParquetDatasetSink(
        tmp_path, "contacts", SCHEMA, partition_date=DAY, run_id=run_id, max_rows_per_file=2
    ) as sink:
        sink.write(rich_table())
    tables["contacts"] = TableManifest.from_files(SCHEMA, sink.close())
    with CsvSink(tmp_path, "notes", SCHEMA, run_id=run_id) as csv_sink:
        csv_sink.write(rich_table())
    tables["notes"] = TableManifest.from_files(SCHEMA, csv_sink.close())
    return RunManifest(
        run_id=run_id,
        pipeline="export",
        source="salesmanago",
        destination_format="parquet",
        started_at="2026-11-23T09:30:00Z",
        finished_at="2026-11-23T09:31:00Z",
        duration_s=60.0,
        tables=tables,
        stats={"requests": 12, "retries": 1, "rows_per_s": 0.1},
        window={"from": "2026-11-22T00:00:00Z", "to": "2026-11-23T00:00:00Z"},
    )


def test_manifest_round_trip_and_counts_match(tmp_path: Path) -> None:
    manifest = build_run(tmp_path, "run1")
    assert manifest.tables["contacts"].rows == 3
    assert [f.rows for f in manifest.tables["contacts"].files] == [2, 1]
    assert manifest.tables["notes"].files[0].path == "notes/notes-run1.csv"
    assert manifest.tables["contacts"].schema[8] == {
        "name": "created_at",
        "type": "timestamp[ms, tz=UTC]",
    }

    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / "_runs" / "run1" / "manifest.json"
    latest = tmp_path / "manifest.json"
    assert path.read_bytes() == latest.read_bytes()
    assert path.read_text(encoding="utf-8").startswith('{\n  "run_id": "run1",')
    assert read_manifest(path) == manifest
    assert read_manifest(latest) == manifest
    assert manifest_counts_match(tmp_path, manifest) == []
    assert [p for p in all_files(tmp_path) if "/." in f"/{p}"] == []  # no temp files left
    # manifest and run directory are invisible to dataset readers
    assert ds.dataset(tmp_path / "contacts", partitioning="hive").to_table().num_rows == 3

    second = build_run(tmp_path, "run2")
    write_manifest(tmp_path, second)
    assert read_manifest(latest).run_id == "run2"
    assert read_manifest(tmp_path / "_runs" / "run1" / "manifest.json").run_id == "run1"


def test_manifest_counts_match_catches_tampering(tmp_path: Path) -> None:
    manifest = build_run(tmp_path, "run3")
    path = write_manifest(tmp_path, manifest)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["tables"]["contacts"]["files"][0]["rows"] = 5
    data["tables"]["notes"]["rows"] = 4
    path.write_text(json.dumps(data), encoding="utf-8")
    tampered = read_manifest(path)
    assert manifest_counts_match(tmp_path, tampered) == [
        "contacts: table rows 3 != sum of file rows 6",
        "contacts: contacts/dt=2026-11-23/part-run3-00000.parquet has 2 rows, manifest says 5",
        "notes: table rows 4 != sum of file rows 3",
    ]

    (tmp_path / "notes" / "notes-run3.csv").unlink()
    with (tmp_path / manifest.tables["contacts"].files[1].path).open("ab") as fh:
        fh.write(b"x")
    problems = manifest_counts_match(tmp_path, manifest)
    assert problems[0].startswith(
        "contacts: contacts/dt=2026-11-23/part-run3-00001.parquet is unreadable:"
    )
    assert problems[1:] == ["notes: notes/notes-run3.csv is missing"]


def test_replace_partition_keeps_only_the_latest_runs_parts(tmp_path: Path) -> None:
    day = date(2026, 11, 23)
    for run_id, start in (("run-a", 0), ("run-b", 100)):
        sink = ParquetDatasetSink(
            tmp_path, "t", SIMPLE, partition_date=day, run_id=run_id, replace_partition=True
        )
        sink.write(simple_batch(start, 10))
        sink.close()
    other_day = ParquetDatasetSink(
        tmp_path,
        "t",
        SIMPLE,
        partition_date=date(2026, 11, 22),
        run_id="run-c",
        replace_partition=True,
    )
    other_day.write(simple_batch(500, 3))
    other_day.close()
    table = pd.read_parquet(tmp_path / "t")
    assert sorted(table["id"]) == [*range(100, 110), 500, 501, 502]
    assert all_files(tmp_path / "t" / "dt=2026-11-23") == ["part-run-b-00000.parquet"]


# --- SALESmanago upsert entries built column-wise ----------------------------------------------
LOAD_FRAME = pa.schema(
    [
        ("row", pa.int64()),
        *((c, pa.string()) for c in ("email", "name", "first_name", "last_name", "phone")),
        *((c, pa.string()) for c in ("company", "street", "zip_code", "city", "province")),
        *((c, pa.string()) for c in ("country", "state", "external_id", "birthday")),
        ("tags", pa.list_(pa.string())),
        ("properties", pa.map_(pa.string(), pa.string())),
    ]
)
AWKWARD_TEXT = ['Zoë "Zo" Müller', "back\\slash", "日本 🚀", "", None, "line\nbreak", "tab\there"]


def awkward_frame(n: int) -> pa.Table:
    """Quotes, backslashes, non-ASCII, control characters, empty and missing values, empty and
    null tags, a property given twice or without a value: every corner of the entry rules."""
    rows = []
    for i in range(n):
        text = AWKWARD_TEXT[i % len(AWKWARD_TEXT)]
        other = AWKWARD_TEXT[(i * 3 + 1) % len(AWKWARD_TEXT)]
        rows.append(
            {
                "row": i + 2,
                "email": f"person{i}@example.org",
                "name": other if i % 4 else None,
                "first_name": text if i % 3 else None,
                "last_name": other if i % 5 else "",
                "phone": "+4930123456" if i % 2 else None,
                "company": text,
                "street": other,
                "zip_code": "10115" if i % 3 == 0 else None,
                "city": text if i % 7 else None,
                "province": other if i % 6 == 0 else None,
                "country": "DE",
                "state": "CUSTOMER" if i % 8 == 0 else None,
                "external_id": str(i) if i % 9 == 0 else None,
                "birthday": "19900503" if i % 2 else None,
                "tags": [[], None, ["vip"], ["a", 'b"c', text or "x"]][i % 4],
                "properties": [
                    None,
                    [],
                    [("Tier", "gold")],
                    [("Tier", other), ('Notes "x"', text)],
                    [("dup", "1"), ("dup", None)],
                ][i % 5],
            }
        )
    return pa.Table.from_pylist(rows, schema=LOAD_FRAME)


def test_column_wise_entries_are_the_per_row_entries() -> None:
    table = awkward_frame(140)
    for frame in (table, table.slice(13, 90), pa.concat_tables([table.slice(0, 5), table])):
        encoded = salesmanago_entries(frame, SalesManagoContactWriter.entry).to_pylist()
        expected = [SalesManagoContactWriter.entry(r) for r in frame.to_pylist()]
        assert [orjson.loads(e) for e in encoded] == expected
    fewer = table.drop_columns(["first_name", "tags", "properties", "street", "zip_code"])
    encoded = salesmanago_entries(fewer, SalesManagoContactWriter.entry).to_pylist()
    assert [orjson.loads(e) for e in encoded] == [
        SalesManagoContactWriter.entry(r) for r in fewer.to_pylist()
    ]


async def test_pre_encoded_entries_store_the_same_contacts_as_dicts() -> None:
    """An import's Arrow chunk (entries encoded column-wise, sent pre-encoded) leaves the same
    contacts in the CRM as the same rows sent as one dict each, with one result per row."""
    table = awkward_frame(1200)  # two requests
    stored = []
    for encoded in (True, False):
        async with SalesManagoEmulator(SandboxConfig(contacts=0)) as sm:
            async with SalesManagoClient(sm_config(sm)) as client:
                if encoded:
                    results = await SalesManagoContactWriter(client).write(table)
                    assert [r.row for r in results] == table["row"].to_pylist()
                    assert all(r.ok and r.id == sm.store.id_for_email(r.email) for r in results)
                else:
                    entries = [SalesManagoContactWriter.entry(r) for r in table.to_pylist()]
                    assert all(o.ok for o in await client.batch_upsert(entries))
            assert sorted(sm.stats.batch_sizes["contact/batchupsert"]) == [200, 1000]
            stored.append(
                sorted(
                    (
                        {k: v for k, v in c.items() if k not in ("id", "createdOn", "modifiedOn")}
                        | {"contactTags": [t["tag"] for t in c["contactTags"]]}
                        for c in sm.store.contacts.values()
                    ),
                    key=lambda c: c["email"],
                )
            )
    assert len(stored[0]) == 1200
    assert stored[0] == stored[1]


async def test_salesnexus_entries_column_wise_are_the_per_row_entries() -> None:
    """Field ids from the catalog, full names, ``yyyy-MM-dd`` birthdays, tags as one text, and
    properties under the id of the custom field of their name (one overriding a column's)."""
    table = awkward_frame(140)
    props = pa.array(
        [
            [("Customer Tier", text), ("lead source", "web"), ("PHONE", "+1 555"), ("Nope", "x")]
            if i % 3
            else [("Customer Tier", None), ("Customer Tier", "gold")]
            for i, text in enumerate(AWKWARD_TEXT * 20)
        ],
        LOAD_FRAME.field("properties").type,
    )
    table = table.set_column(table.schema.get_field_index("properties"), "properties", props)
    async with (
        SalesNexusEmulator(SandboxConfig(contacts=0)) as sn,
        SalesNexusClient(sn_config(sn)) as client,
    ):
        writer = SalesNexusContactWriter(
            client, FieldCatalog.from_api(await client.get_all_fields())
        )
    for frame in (table, table.slice(7, 100)):
        rows, emails, entries = writer.encode(frame)
        assert (rows, emails) == (frame["row"].to_pylist(), frame["email"].to_pylist())
        expected = [writer.entry(r) for r in frame.to_pylist()]
        assert [orjson.loads(e) for e in entries] == expected
