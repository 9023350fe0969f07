"""The export use case end to end: seeded emulators over loopback HTTP -> files on disk.

Every expectation is computed here from the emulator's raw store with plain Python (never by
calling the transforms), then compared field by field with what the files hold, for every row.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from pydantic import SecretStr

from etl.clients import AuthenticationError, Pacing
from etl.pipeline.export import ExportJob, run_export
from etl.sandbox import (
    FaultConfig,
    QuotaConfig,
    SalesManagoEmulator,
    SalesNexusEmulator,
    SandboxConfig,
)
from etl.sandbox.salesmanago_store import SalesManagoStore
from etl.sandbox.salesnexus_store import SalesNexusStore
from etl.transform import SCHEMAS
from tests.support import sm_config, sn_config

Row = dict[str, Any]
Expected = dict[str, dict[str, Row]]  # table -> source_id -> canonical row

DAY = date(2026, 11, 23)
SEEDED = SandboxConfig(contacts=300, activities=600, sales=150)
PAGE = 50
PREFETCH = 3  # fewer than the pages of every stream, so the window slides
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TABLE_NAMES = ("contacts", "activities", "sales")


# --- plain-Python expectations from the stores ----------------------------------------------------


def blank(value: Any) -> Any:
    return None if value in (None, "") else value


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(milliseconds=value)


def iso_ms(value: int) -> str:
    stamp = EPOCH + timedelta(milliseconds=value)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond // 1000:03d}Z"


def from_iso(value: str) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def split_name(name: str | None) -> tuple[str | None, str | None]:
    parts = (name or "").split(None, 1)
    first = parts[0] if parts else None
    return first, blank(parts[1].strip()) if len(parts) > 1 else None


def sm_expected(store: SalesManagoStore) -> Expected:
    contacts: dict[str, Row] = {}
    activities: dict[str, Row] = {}
    sales: dict[str, Row] = {}
    for c in store.contacts.values():
        cid = c["id"]
        address = c["address"] or {}
        year, month, day = c["birthdayYear"], c["birthdayMonth"], c["birthdayDay"]
        props = {p["name"]: p["value"] for p in c["properties"] if p["name"] and p["value"]}
        if year is None and month is not None and day is not None:
            props["birthday_month_day"] = f"{month:02d}-{day:02d}"
        for flag, key in (
            ("optedOutPhone", "opted_out_phone"),
            ("deleted", "deleted"),
            ("invalid", "invalid"),
        ):
            if c[flag]:
                props[key] = "true"
        first, last = split_name(c["name"])
        contacts[cid] = {
            "source": "salesmanago",
            "source_id": cid,
            "email": c["email"],
            "name": blank(c["name"]),
            "first_name": first,
            "last_name": last,
            "phone": blank(c["phone"]),
            "fax": blank(c["fax"]),
            "company": blank(c["company"]),
            "street": blank(address.get("streetAddress")),
            "zip_code": blank(address.get("zipCode")),
            "city": blank(address.get("city")),
            "province": blank(c["province"]),
            "country": blank(address.get("country")),
            "birthday": date(year, month, day) if None not in (year, month, day) else None,
            "state": blank(c["state"]),
            "score": c["score"],
            "opted_out": c["optedOut"],
            "owner": blank(c["mainContactOwner"]),
            "external_id": blank(c["externalId"]),
            "tags": [t["tag"] for t in c["contactTags"] if t["tag"]],
            "created_at": from_ms(c["createdOn"]),
            "modified_at": from_ms(c["modifiedOn"]),
            "properties": props,
        }

        def activity(source_id: str, kind: str, props: dict[str, str], **values: Any) -> None:
            activities[source_id] = {
                "source": "salesmanago",
                "source_id": source_id,
                "contact_id": cid,  # noqa: B023 - used at once, inside the iteration
                "kind": kind,
                "subject": None,
                "details": None,
                "start_time": None,
                "end_time": None,
                "completed": None,
                "result": None,
                "assigned_to": None,
                "properties": props,
                **values,
            }

        for i, task in enumerate(c["contactTasks"]):
            props = {"cc": task["cc"]} if task["cc"] else {}
            if task["reminder"] is not None:
                props["reminder"] = iso_ms(task["reminder"])
            activity(
                task["id"] or f"{cid}:task:{i}",
                "task",
                props,
                details=blank(task["note"]),
                start_time=from_ms(task["date"]),
            )
        for i, note in enumerate(c["contactNotes"]):
            props = {} if note["priv"] is None else {"priv": str(note["priv"]).lower()}
            activity(
                f"{cid}:note:{i}",
                "note",
                props,
                details=blank(note["note"]),
                start_time=from_ms(note["date"]),
            )
        for i, visit in enumerate(c["contactVisits"]):
            keys = (
                "host",
                "visitSource",
                "visitSourceHost",
                "visitSourceKeywords",
                "visitScore",
                "location",
                "conversationIntId",
                "duration",
            )
            duration = visit["duration"]
            activity(
                f"{cid}:visit:{i}",
                "visit",
                {k: str(visit[k]) for k in keys if visit[k] not in (None, "")},
                details=blank(visit["url"]),
                start_time=from_ms(visit["time"]),
                end_time=None if duration is None else from_ms(visit["time"] + duration),
            )
        for event in c["contactExtEvents"]:
            if event["contactExtEventType"] != "PURCHASE":
                continue
            keys = ("location", *(f"detail{n}" for n in range(1, 21)))
            sales[event["eventId"]] = {
                "source": "salesmanago",
                "source_id": event["eventId"],
                "contact_id": cid,
                "status": "won",
                "amount": None if event["value"] is None else float(event["value"]),
                "details": blank(event["description"]),
                "stage": None,
                "products": blank(event["products"]),
                "occurred_at": from_ms(event["date"]),
                "created_at": from_ms(event["date"]),
                "external_id": blank(event["externalId"]),
                "properties": {k: event[k] for k in keys if blank(event[k]) is not None},
            }
    return {"contacts": contacts, "activities": activities, "sales": sales}


# SalesNexus field NAMES with a canonical column; every other field lands in properties by name.
SN_CONTACT_COLUMNS = {
    "Email": "email",
    "Full Name": "name",
    "First Name": "first_name",
    "Last Name": "last_name",
    "Phone": "phone",
    "Company": "company",
    "Street": "street",
    "City": "city",
    "State": "province",
    "Zip Code": "zip_code",
    "Country": "country",
    "Record Manager": "owner",
}
SN_CONTACT_TYPED = {"Birthday", "Tags", "Created", "Modified"}
SN_SALES_USED = {
    "Contact ID",
    "Status",
    "Details",
    "Sales State",
    "Amount",
    "Close Date",
    "Created",
}
SN_ACTIVITY_USED = {
    "activity-id",
    "schedule-with",
    "schedule-for",
    "type",
    "regarding",
    "details",
    "result",
    "start-time",
    "end-time",
    "completed",
}
SN_STATUS = {"0": "open", "1": "won", "2": "lost"}
SN_BOOL = {"true": True, "false": False}


def by_name(store: SalesNexusStore, table: str, record: dict[str, str]) -> dict[str, str]:
    """A field-id keyed record re-keyed by field name, through the store's own catalog."""
    names = {str(f.id): f.name for f in store.fields if f.table == table}
    return {names[key]: value for key, value in record.items()}


def sn_expected(store: SalesNexusStore) -> Expected:
    contacts: dict[str, Row] = {}
    for cid, record in store.contacts.items():
        v = by_name(store, "contact", record)
        row: Row = {column: blank(v.get(name, "")) for name, column in SN_CONTACT_COLUMNS.items()}
        first, last = split_name(row["name"])
        if row["name"] is None:
            row["name"] = blank(" ".join(filter(None, (row["first_name"], row["last_name"]))))
        row["first_name"] = row["first_name"] or first
        row["last_name"] = row["last_name"] or last
        tags = v.get("Tags", "")
        row.update(
            source="salesnexus",
            source_id=cid,
            fax=None,
            birthday=date.fromisoformat(v["Birthday"]) if v.get("Birthday") else None,
            state=None,
            score=None,
            opted_out=None,
            external_id=None,
            tags=[t.strip() for t in tags.split(",") if t.strip()],
            created_at=from_iso(v.get("Created", "")),
            modified_at=from_iso(v.get("Modified", "")),
            properties={
                name: value
                for name, value in v.items()
                if value and name not in SN_CONTACT_COLUMNS and name not in SN_CONTACT_TYPED
            },
        )
        contacts[cid] = row
    activities = {
        aid: {
            "source": "salesnexus",
            "source_id": aid,
            "contact_id": blank(a["schedule-with"]),
            "kind": blank(a["type"]),
            "subject": blank(a["regarding"]),
            "details": blank(a["details"]),
            "start_time": from_iso(a["start-time"]),
            "end_time": from_iso(a["end-time"]),
            "completed": SN_BOOL.get(a["completed"]),
            "result": blank(a["result"]),
            "assigned_to": blank(a["schedule-for"]),
            "properties": {k: x for k, x in a.items() if x and k not in SN_ACTIVITY_USED},
        }
        for aid, a in store.activities.items()
    }
    sales: dict[str, Row] = {}
    for sid, record in store.sales.items():
        v = by_name(store, "sales", record)
        close = v.get("Close Date", "")
        sales[sid] = {
            "source": "salesnexus",
            "source_id": sid,
            "contact_id": blank(v.get("Contact ID")),
            "status": SN_STATUS.get(v.get("Status", "")),
            "amount": float(v["Amount"]) if v.get("Amount") else None,
            "details": blank(v.get("Details")),
            "stage": blank(v.get("Sales State")),
            "products": None,
            "occurred_at": (
                datetime.combine(date.fromisoformat(close), time(), UTC) if close else None
            ),
            "created_at": from_iso(v.get("Created", "")),
            "external_id": None,
            "properties": {k: x for k, x in v.items() if x and k not in SN_SALES_USED},
        }
    return {"contacts": contacts, "activities": activities, "sales": sales}


# --- reading the files back -------------------------------------------------------------------


def visible_files(root: Path) -> list[str]:
    """Data files a reader would see (no manifest, nothing under _runs, nothing hidden)."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and p.relative_to(root).parts[0] != "_runs"
        and p.name != "manifest.json"
    )


def read_parquet_rows(out: Path, table: str) -> list[Row]:
    data = ds.dataset(out / table, format="parquet", partitioning="hive").to_table()
    assert data.column_names == [*SCHEMAS[table].names, "dt"]
    assert data.drop_columns(["dt"]).schema.equals(SCHEMAS[table])
    rows = data.drop_columns(["dt"]).to_pylist()
    for row in rows:
        row["properties"] = dict(row["properties"])
    return rows


def _csv_value(text: str, type_: pa.DataType) -> Any:
    if text == "":
        return None
    if pa.types.is_string(type_):
        return text
    if pa.types.is_int64(type_):
        return int(text)
    if pa.types.is_float64(type_):
        return float(text)
    if pa.types.is_boolean(type_):
        return SN_BOOL[text]
    if pa.types.is_date32(type_):
        return date.fromisoformat(text)
    if pa.types.is_timestamp(type_):
        assert text.endswith("Z"), text
        return datetime.fromisoformat(text)
    return json.loads(text)  # lists and maps are JSON text


def read_csv_rows(out: Path, table: str) -> list[Row]:
    (path,) = (out / table).glob("*.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    schema = SCHEMAS[table]
    assert list(frame.columns) == schema.names
    return [
        {f.name: _csv_value(record[f.name], f.type) for f in schema}
        for record in frame.to_dict("records")
    ]


def read_rows(out: Path, table: str, fmt: str) -> list[Row]:
    return read_parquet_rows(out, table) if fmt == "parquet" else read_csv_rows(out, table)


def assert_rows(rows: list[Row], expected: dict[str, Row], table: str) -> None:
    """Each expected source_id exactly once, and every row equal field by field."""
    counts = Counter(r["source_id"] for r in rows)
    assert [i for i, n in counts.items() if n > 1] == [], f"{table}: duplicated source_id"
    assert set(counts) == set(expected), f"{table}: source_ids differ"
    for row in rows:
        want = {**expected[row["source_id"]], "deleted_at": None}  # live rows: no tombstone
        assert set(row) == set(want), table
        diff = {k: (row[k], want[k]) for k in want if row[k] != want[k]}
        assert diff == {}, f"{table} {row['source_id']}: (got, expected) {diff}"


def assert_export(out: Path, fmt: str, expected: Expected, tables: Iterable[str]) -> None:
    for table in tables:
        assert_rows(read_rows(out, table, fmt), expected[table], table)


def job(out: Path, crm: str, connection: Any, **overrides: Any) -> ExportJob:
    values: dict[str, Any] = {
        "pipeline": f"test_{crm}",
        "crm": crm,
        "connection": connection,
        "out": out,
        "page_size": PAGE,
        "prefetch_pages": PREFETCH,
        "partition_date": DAY,
    }
    return ExportJob(**{**values, **overrides})


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_salesmanago_export_holds_exactly_the_store(tmp_path: Path, fmt: str) -> None:
    async with SalesManagoEmulator(SEEDED) as sm:
        summary = await run_export(job(tmp_path, "salesmanago", sm_config(sm), fmt=fmt))
    expected = sm_expected(sm.store)
    contacts = sm.store.contacts.values()
    assert summary.rows == {
        "contacts": len(sm.store.contacts),
        "activities": sum(
            len(c["contactTasks"]) + len(c["contactNotes"]) + len(c["contactVisits"])
            for c in contacts
        ),
        "sales": sum(
            e["contactExtEventType"] == "PURCHASE" for c in contacts for e in c["contactExtEvents"]
        ),
    }
    assert summary.rows == {"contacts": 300, "activities": 600, "sales": 150}
    # several pages of exactly PAGE contacts, through a window smaller than the page count
    pages = sm.stats.batch_sizes["contact/paginatedContactList"]
    assert set(pages) == {PAGE} and len(pages) >= 300 // PAGE
    assert_export(tmp_path, fmt, expected, TABLE_NAMES)
    # the seeded data reaches the interesting cases the comparison covers
    assert {r["kind"] for r in expected["activities"].values()} == {"task", "note", "visit"}
    assert any(r["properties"] for r in expected["contacts"].values())
    assert any(r["birthday"] for r in expected["contacts"].values())


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_salesnexus_export_holds_exactly_the_store(tmp_path: Path, fmt: str) -> None:
    async with SalesNexusEmulator(SEEDED) as sn:
        summary = await run_export(job(tmp_path, "salesnexus", sn_config(sn), fmt=fmt))
    store = sn.store
    expected = sn_expected(store)
    assert summary.rows == {
        "contacts": len(store.contacts),
        "activities": len(store.activities),
        "sales": len(store.sales),
    }
    assert summary.rows == {"contacts": 300, "activities": 600, "sales": 150}
    for listing in ("get-contacts", "get-activities", "get-sales"):
        assert set(sn.stats.batch_sizes[listing]) == {PAGE}
    assert_export(tmp_path, fmt, expected, TABLE_NAMES)
    contacts = expected["contacts"].values()
    assert any("Lead Source" in r["properties"] for r in contacts)
    assert any("Annual Revenue" in r["properties"] for r in contacts)
    assert {r["status"] for r in expected["sales"].values()} == {"open", "won", "lost"}


async def test_salesnexus_field_ids_are_resolved_by_name(tmp_path: Path) -> None:
    async with SalesNexusEmulator(replace(SEEDED, field_id_offset=1000)) as sn:
        await run_export(job(tmp_path, "salesnexus", sn_config(sn)))
    assert sn.store.field_id("contact", "Email") == 1133
    assert sn.store.field_id("contact", "Lead Source") == 1300
    expected = sn_expected(sn.store)
    assert_export(tmp_path, "parquet", expected, TABLE_NAMES)
    rows = read_parquet_rows(tmp_path, "contacts")
    assert not any(key.startswith("field_") for r in rows for key in r["properties"])
    assert sum(r["email"] is not None for r in rows) == sum(
        r["email"] is not None for r in expected["contacts"].values()
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_manifest_lists_what_the_files_hold(tmp_path: Path, fmt: str) -> None:
    async with SalesNexusEmulator(SEEDED) as sn:
        export = job(tmp_path, "salesnexus", sn_config(sn), fmt=fmt)
        summary = await run_export(export)
    latest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    run_path = tmp_path / "_runs" / export.run_id / "manifest.json"
    assert summary.manifest == run_path
    assert json.loads(run_path.read_text(encoding="utf-8")) == latest
    assert latest["run_id"] == export.run_id
    assert latest["source"] == "salesnexus"
    assert latest["destination_format"] == fmt
    assert set(latest["tables"]) == set(TABLE_NAMES)
    listed: list[str] = []
    for table, entry in latest["tables"].items():
        rows = read_rows(tmp_path, table, fmt)
        assert entry["rows"] == len(rows) == summary.rows[table]
        assert sum(f["rows"] for f in entry["files"]) == len(rows)
        assert entry["schema"] == [{"name": f.name, "type": str(f.type)} for f in SCHEMAS[table]]
        for file in entry["files"]:
            assert file["table"] == table
            assert (tmp_path / file["path"]).stat().st_size == file["bytes"]
            listed.append(file["path"])
    assert sorted(listed) == visible_files(tmp_path)
    assert summary.files == len(listed)


async def test_parquet_dataset_reads_with_its_partition_column(tmp_path: Path) -> None:
    async with SalesManagoEmulator(SEEDED) as sm:
        await run_export(job(tmp_path, "salesmanago", sm_config(sm)))
    for path in visible_files(tmp_path):
        table, partition, name = path.split("/")
        assert table in TABLE_NAMES and partition == "dt=2026-11-23"
        assert name.startswith("part-") and name.endswith(".parquet")
    dataset = ds.dataset(tmp_path / "contacts", partitioning="hive").to_table()
    assert dataset.num_rows == 300
    assert {str(d) for d in dataset.column("dt").to_pylist()} == {DAY.isoformat()}
    frame = pd.read_parquet(tmp_path / "contacts")
    assert len(frame) == 300
    assert {str(d) for d in frame["dt"]} == {DAY.isoformat()}
    assert list(frame.columns) == [*SCHEMAS["contacts"].names, "dt"]


CONFIGS: dict[str, Callable[..., Any]] = {"salesmanago": sm_config, "salesnexus": sn_config}
EMULATORS: dict[str, type[SalesManagoEmulator] | type[SalesNexusEmulator]] = {
    "salesmanago": SalesManagoEmulator,
    "salesnexus": SalesNexusEmulator,
}


@pytest.mark.parametrize("crm", ["salesmanago", "salesnexus"])
async def test_faults_and_quota_still_give_every_record_once(tmp_path: Path, crm: str) -> None:
    config = replace(
        SEEDED,
        faults=FaultConfig.uniform(0.1, seed=1234),
        quota=QuotaConfig(rate=60.0, burst=10),
    )
    pacing = Pacing(rate=50.0, burst=1, max_in_flight=8)
    async with EMULATORS[crm](config) as emulator:
        connection = CONFIGS[crm](emulator, pacing=pacing)
        summary = await run_export(job(tmp_path, crm, connection, page_size=25))
    expected = (sm_expected if crm == "salesmanago" else sn_expected)(emulator.store)  # type: ignore[arg-type]
    assert summary.rows == {t: len(expected[t]) for t in TABLE_NAMES}
    assert_export(tmp_path, "parquet", expected, TABLE_NAMES)
    assert summary.retries > 0
    assert sum(emulator.stats.faults.values()) > 0


@pytest.mark.parametrize("crm", ["salesmanago", "salesnexus"])
async def test_only_the_requested_tables_are_written(tmp_path: Path, crm: str) -> None:
    async with EMULATORS[crm](SEEDED) as emulator:
        export = job(tmp_path, crm, CONFIGS[crm](emulator), tables=("contacts",))
        summary = await run_export(export)
    assert summary.rows == {"contacts": 300}
    assert {p.name for p in tmp_path.iterdir()} == {"contacts", "manifest.json", "_runs"}
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert list(manifest["tables"]) == ["contacts"]
    assert [p.split("/")[0] for p in visible_files(tmp_path)] == ["contacts"]
    if crm == "salesnexus":  # the other listings are not even read
        assert set(emulator.stats.calls) & {"get-activities", "get-sales"} == set()


async def test_wrong_salesmanago_secret_fails_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with SalesManagoEmulator(SEEDED) as sm:
        connection = sm_config(sm, api_secret=SecretStr("not-the-secret"))
        with pytest.raises(AuthenticationError) as caught:
            await run_export(job(out, "salesmanago", connection))
    assert "not-the-secret" not in str(caught.value)
    assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == []


async def test_wrong_salesnexus_password_fails_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with SalesNexusEmulator(SEEDED) as sn:
        connection = sn_config(sn, password=SecretStr("not-the-password"))
        with pytest.raises(AuthenticationError):
            await run_export(job(out, "salesnexus", connection, fmt="csv"))
    assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == []


async def test_an_internal_error_on_the_login_call_is_retried(tmp_path: Path) -> None:
    """Regression: ``internal-error`` on ``get-login-token`` was taken for refused credentials."""
    # Only call errors are injected, so the login (the first call) takes the first draw of the
    # seeded fault stream: pick a seed whose first draw fails it.
    seed = next(s for s in range(100) if random.Random(s).random() < 0.3)
    config = replace(SEEDED, contacts=30, faults=FaultConfig(call_error=0.3, seed=seed))
    async with SalesNexusEmulator(config) as sn:
        summary = await run_export(job(tmp_path, "salesnexus", sn_config(sn)))
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stats"]["logins"] >= 2  # the failed login and its retry
    assert sn.stats.logins == 1  # one token issued
    assert summary.retries >= 1
    assert_export(tmp_path, "parquet", sn_expected(sn.store), TABLE_NAMES)
