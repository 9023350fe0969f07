"""SalesNexus pages (contacts, activities, sales) to the canonical tables.

Contact and sales records are keyed by field id, and ids differ per account, so every column is
named through a ``FieldCatalog`` built from ``get-all-fields`` at run time; this module knows
field NAMES only. Fields without a canonical column land in ``properties`` under their name
(an id missing from the catalog under ``field_<id>``). A value given for a typed column that
does not parse (a bad date, amount, status...) is kept in ``properties`` under its field name.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform import _arrow as A
from etl.transform.schemas import ACTIVITIES, CONTACTS, SALES

SOURCE = "salesnexus"

_TABLE_ALIASES = {"contacts": "contact", "activities": "activity", "notes": "note"}

# Canonical contact columns by SalesNexus field name (contact table). Typed ones are parsed.
CONTACT_TEXT_FIELDS = {
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
CONTACT_TYPED_FIELDS = ("Birthday", "Tags", "Created", "Modified")

SALES_TEXT_FIELDS = {"Contact ID": "contact_id", "Details": "details", "Sales State": "stage"}
SALES_TYPED_FIELDS = ("Status", "Amount", "Close Date", "Created")
SALES_STATUS = {"0": "open", "1": "won", "2": "lost"}

ACTIVITY_COLUMNS = {
    "schedule-with": "contact_id",
    "type": "kind",
    "regarding": "subject",
    "details": "details",
    "result": "result",
    "schedule-for": "assigned_to",
}
ACTIVITY_TYPED_KEYS = ("activity-id", "start-time", "end-time", "completed")


def _table_name(table: str) -> str:
    table = table.strip().lower()
    return _TABLE_ALIASES.get(table, table)


@dataclass(frozen=True)
class CatalogField:
    id: int
    name: str
    table: str
    type: str


@dataclass(frozen=True)
class FieldCatalog:
    """Field ids <-> names of one SalesNexus account (``get-all-fields``).

    Name lookups are case-insensitive and per table ("contact", "activity", "sales", "note";
    the plurals are accepted too). If a table holds two fields of the same name, the first one
    listed wins.
    """

    fields: tuple[CatalogField, ...]
    _by_id: Mapping[int, CatalogField] = field(init=False, repr=False, compare=False)
    _by_name: Mapping[tuple[str, str], CatalogField] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[int, CatalogField] = {}
        by_name: dict[tuple[str, str], CatalogField] = {}
        for f in self.fields:
            by_id.setdefault(f.id, f)
            by_name.setdefault((f.table, f.name.casefold()), f)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_by_name", by_name)

    @classmethod
    def from_api(cls, fields: Iterable[Mapping[str, Any]]) -> FieldCatalog:
        return cls(
            tuple(
                CatalogField(
                    id=int(f["id"]),
                    name=str(f["name"]).strip(),
                    table=_table_name(str(f.get("table", ""))),
                    type=str(f.get("type", "text")),
                )
                for f in fields
            )
        )

    def id_for(self, table: str, name: str) -> int:
        key = (_table_name(table), name.strip().casefold())
        try:
            return self._by_name[key].id
        except KeyError:
            raise KeyError(
                f"SalesNexus field {name!r} not found in table {key[0]!r} of the field catalog"
            ) from None

    def name_for(self, id: int | str) -> str:
        return self._field(id).name

    def type_for(self, id: int | str) -> str:
        return self._field(id).type

    def fields_for(self, table: str) -> tuple[CatalogField, ...]:
        table = _table_name(table)
        return tuple(f for f in self.fields if f.table == table)

    def _field(self, id: int | str) -> CatalogField:
        try:
            return self._by_id[int(id)]
        except (KeyError, ValueError):
            raise KeyError(f"SalesNexus field id {id!r} not in the field catalog") from None


class _Columns:
    """A page of string records as Arrow string columns, with "consumed" bookkeeping."""

    def __init__(self, records: Records, n: int) -> None:
        self.n = n
        self.columns = _string_columns(records, n)
        self.used: set[str] = set()

    def take(self, key: str | None) -> pa.Array:
        """The column (nulls when absent); it will not go to properties."""
        if key is None or key not in self.columns:
            return pa.nulls(self.n, pa.string())
        self.used.add(key)
        return self.columns[key]

    def rest(self) -> list[tuple[str, pa.Array]]:
        return [(k, v) for k, v in self.columns.items() if k not in self.used]


# A page of records: decoded JSON, or (record_array) a struct array of string fields.
Records = Sequence[Mapping[str, Any]] | pa.StructArray


def record_array(records: Sequence[Mapping[str, Any]]) -> Records:
    """The page as a struct array with a string field per key (in order of appearance, as
    ``pa.array`` infers them), which holds a fraction of the memory of the dicts; the records
    unchanged when some value is not a string (the transforms then stringify them)."""
    try:
        keys = dict.fromkeys(itertools.chain.from_iterable(r for r in records if r is not None))
        return pa.array(records, type=pa.struct([(k, pa.string()) for k in keys]))
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return records


def concat_records(pages: Sequence[Records]) -> Records:
    """Several pages as one; struct arrays stay struct arrays (fields by name, null-filled)."""
    if len(pages) == 1:
        return pages[0]
    if not all(isinstance(p, pa.StructArray) for p in pages):
        return [r for p in pages for r in (p.to_pylist() if isinstance(p, pa.Array) else p)]
    arrays: list[pa.StructArray] = list(pages)  # type: ignore[arg-type]
    if all(a.type == arrays[0].type for a in arrays):
        return pa.concat_arrays(arrays)
    keys = dict.fromkeys(f.name for a in arrays for f in a.type)
    children = [
        pa.concat_arrays(
            [
                pc.struct_field(a, k)
                if a.type.get_field_index(k) >= 0
                else pa.nulls(len(a), pa.string())
                for a in arrays
            ]
        )
        for k in keys
    ]
    return pa.StructArray.from_arrays(children, names=list(keys))


def _string_columns(records: Records, n: int) -> dict[str, pa.Array]:
    if n == 0:
        return {}
    if not isinstance(records, pa.StructArray):
        records = record_array(records)
    if isinstance(records, pa.StructArray):
        return {f.name: pc.struct_field(records, f.name) for f in records.type}
    try:
        arr = pa.array(records)
        if not pa.types.is_struct(arr.type):
            raise TypeError(arr.type)
        columns = {f.name: A.text(pc.struct_field(arr, f.name)) for f in arr.type}
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # Mixed value types: stringify everything (no per-field type is known).
        keys = list(dict.fromkeys(k for r in records for k in (r or {})))
        columns = {
            k: pa.array([_as_str((r or {}).get(k)) for r in records], pa.string()) for k in keys
        }
    return columns


def _as_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_ids(ids: Sequence[str], records: Records, what: str) -> pa.Array:
    if len(ids) != len(records):
        raise ValueError(f"SalesNexus {what}: {len(ids)} ids for {len(records)} records")
    return A.text(pa.array(list(ids))) if ids else pa.array([], pa.string())


def _key(catalog: FieldCatalog, table: str, name: str) -> str | None:
    """The record key (field id as a string) of a field, None if the account lacks it."""
    try:
        return str(catalog.id_for(table, name))
    except KeyError:
        return None


def _field_name(catalog: FieldCatalog, key: str) -> str:
    try:
        return catalog.name_for(key)
    except KeyError:
        return f"field_{key}"


def _rest_parts(cols: _Columns, rows: np.ndarray, name_of: Callable[[str], str]) -> list[A.Part]:
    return [A.part(rows, name_of(key), values) for key, values in cols.rest()]


def contacts_table(ids: Sequence[str], records: Records, catalog: FieldCatalog) -> pa.Table:
    """One ``get-contacts`` page to the contacts table."""
    src_ids = _check_ids(ids, records, "contacts")
    n = len(records)
    rows = np.arange(n, dtype=np.int64)
    cols = _Columns(records, n)
    out: dict[str, pa.Array] = {
        column: A.blank_to_null(cols.take(_key(catalog, "contact", name)))
        for name, column in CONTACT_TEXT_FIELDS.items()
    }
    typed = {name: cols.take(_key(catalog, "contact", name)) for name in CONTACT_TYPED_FIELDS}

    first, last = A.split_name(out["name"])
    # null_handling="skip" loses trailing all-null rows in pyarrow 26, hence replace + trim.
    joined = pc.binary_join_element_wise(
        out["first_name"], out["last_name"], " ", null_handling="replace", null_replacement=""
    )
    out["name"] = pc.coalesce(out["name"], A.blank_to_null(pc.utf8_trim_whitespace(joined)))
    out["first_name"] = pc.coalesce(out["first_name"], first)
    out["last_name"] = pc.coalesce(out["last_name"], last)

    out["birthday"] = A.parse_date(typed["Birthday"])
    out["created_at"] = A.parse_iso(typed["Created"])
    out["modified_at"] = A.parse_iso(typed["Modified"])
    out["tags"] = _split_tags(typed["Tags"])

    kept_raw = [
        A.part(rows, name, typed[name], mask=A.failed(typed[name], out[column]))
        for name, column in (
            ("Birthday", "birthday"),
            ("Created", "created_at"),
            ("Modified", "modified_at"),
        )
    ]
    rest = _rest_parts(cols, rows, lambda key: _field_name(catalog, key))
    out["properties"] = A.build_map(n, [*rest, *kept_raw])
    out["source"] = A.constant(n, SOURCE)
    out["source_id"] = src_ids
    return A.table(CONTACTS, out, n)


def _split_tags(raw: pa.Array) -> pa.Array:
    """ "a, b,,c" -> ["a", "b", "c"]; never null."""
    lists = pc.split_pattern(pc.fill_null(raw, ""), ",")
    exploded = A.explode(lists)
    tags = pc.utf8_trim_whitespace(exploded.items)
    keep = A.present(tags)
    parent = exploded.parent[keep.to_numpy(zero_copy_only=False)]
    return A.build_list(len(raw), parent, tags.filter(keep))


def activities_table(ids: Sequence[str], records: Records) -> pa.Table:
    """One ``get-activities`` page to the activities table (records have named keys)."""
    src_ids = _check_ids(ids, records, "activities")
    n = len(records)
    rows = np.arange(n, dtype=np.int64)
    cols = _Columns(records, n)
    out = {column: cols.take(key) for key, column in ACTIVITY_COLUMNS.items()}
    typed = {key: cols.take(key) for key in ACTIVITY_TYPED_KEYS}
    out["source"] = A.constant(n, SOURCE)
    out["source_id"] = pc.coalesce(A.blank_to_null(typed["activity-id"]), src_ids)
    out["start_time"] = A.parse_iso(typed["start-time"])
    out["end_time"] = A.parse_iso(typed["end-time"])
    out["completed"] = A.parse_bool(typed["completed"])
    kept_raw = [
        A.part(rows, key, typed[key], mask=A.failed(typed[key], out[column]))
        for key, column in (
            ("start-time", "start_time"),
            ("end-time", "end_time"),
            ("completed", "completed"),
        )
    ]
    out["properties"] = A.build_map(n, [*_rest_parts(cols, rows, str), *kept_raw])
    return A.table(ACTIVITIES, out, n)


def sales_table(ids: Sequence[str], records: Records, catalog: FieldCatalog) -> pa.Table:
    """One ``get-sales`` page to the sales table."""
    src_ids = _check_ids(ids, records, "sales")
    n = len(records)
    rows = np.arange(n, dtype=np.int64)
    cols = _Columns(records, n)
    out = {
        column: cols.take(_key(catalog, "sales", name))
        for name, column in SALES_TEXT_FIELDS.items()
    }
    typed = {name: cols.take(_key(catalog, "sales", name)) for name in SALES_TYPED_FIELDS}

    status_raw = A.blank_to_null(pc.utf8_trim_whitespace(typed["Status"]))
    status = pa.nulls(n, pa.string())
    for code, label in SALES_STATUS.items():
        status = pc.if_else(pc.equal(status_raw, code), label, status)
    out["status"] = status
    out["amount"] = A.parse_float(typed["Amount"])
    out["occurred_at"] = A.date_to_ts(A.parse_date(typed["Close Date"]))
    out["created_at"] = A.parse_iso(typed["Created"])

    kept_raw = [
        A.part(rows, "status_raw", typed["Status"], mask=A.failed(typed["Status"], status)),
        *(
            A.part(rows, name, typed[name], mask=A.failed(typed[name], out[column]))
            for name, column in (
                ("Amount", "amount"),
                ("Close Date", "occurred_at"),
                ("Created", "created_at"),
            )
        ),
    ]
    rest = _rest_parts(cols, rows, lambda key: _field_name(catalog, key))
    out["properties"] = A.build_map(n, [*rest, *kept_raw])
    out["source"] = A.constant(n, SOURCE)
    out["source_id"] = src_ids
    return A.table(SALES, out, n)
