"""CRM sinks for contacts: a frame of normalised contacts in, one outcome per row out.

Both imports (CSV rows) and migrations (another CRM's contacts) hand these writers the same
frame, the *contact load frame*: a pandas DataFrame with a ``row`` column (the key outcomes are
reported under: a CSV line number, or a position) and any of the columns below. Values are
already normalised and validated by the transform layer; missing values are NA.

=============  ====================================================
column         value
=============  ====================================================
email          lower-case address (required)
name           full name
first_name     given name
last_name      family name
phone, fax     phone numbers (E.164 where a region was configured)
company        company name
street         street and house number
zip_code       postal code
city, province, country
state          SALESmanago contact state (PROSPECT, CUSTOMER, ...)
external_id    an id from another system
birthday       ``YYYYMMDD``
tags           list of strings
properties     dict of custom field name -> string value
=============  ====================================================

Both writes upsert by email, so sending a chunk again after an ambiguous failure is safe.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import compress
from typing import Any, NamedTuple, Protocol

import pandas as pd
import pyarrow as pa

from etl.clients import RowOutcome, SalesManagoClient, SalesNexusClient
from etl.clients.results import BatchOutcomes
from etl.load.contact_payloads import (
    ADDRESS_KEYS,
    CONTACT_KEYS,
    salesmanago_entries,
    salesnexus_entries,
)
from etl.transform.salesnexus import FieldCatalog

# Canonical column -> SalesNexus contact field name (resolved to an id from the catalog).
SALESNEXUS_FIELD_NAMES = {
    "email": "Email",
    "name": "Full Name",
    "first_name": "First Name",
    "last_name": "Last Name",
    "phone": "Phone",
    "company": "Company",
    "street": "Street",
    "city": "City",
    "province": "State",
    "zip_code": "Zip Code",
    "country": "Country",
    "birthday": "Birthday",
    "tags": "Tags",
}


class RowResult(NamedTuple):
    """A write outcome keyed by the frame's ``row`` instead of a position (a tuple: one is
    made per row written)."""

    row: int
    email: str
    status: str
    id: str | None
    message: str | None

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class TableResults:
    """A written table's outcomes column-wise, keyed by its ``row`` column: what an import
    records per row without building an object per row."""

    rows: list[int]
    emails: list[str]
    outcomes: BatchOutcomes

    @property
    def loaded(self) -> int:
        return len(self.rows) - len(self.outcomes.failures)

    def successes(self) -> Iterator[tuple[int, str, str | None, str]]:
        """``(row, email, id, status)`` of every loaded row, in order."""
        o = self.outcomes
        rows = zip(self.rows, self.emails, o.ids, o.statuses, strict=True)
        if not o.failures:
            return rows
        ok = [True] * len(self.rows)
        for index in o.failures:
            ok[index] = False
        return compress(rows, ok)

    def failures(self) -> Iterator[tuple[int, str]]:
        """``(row, message)`` of every row the CRM refused, in order."""
        rows = self.rows
        return ((rows[i], message) for i, message in sorted(self.outcomes.failures.items()))

    def as_rows(self) -> list[RowResult]:
        rows, emails = self.rows, self.emails
        return [
            RowResult(rows[o.index], str(emails[o.index]), o.status, o.id, o.message)
            for o in self.outcomes.rows()
        ]


class ContactWriter(Protocol):
    """Upserts a contact load frame; returns one result per row, in the frame's order."""

    def check(self, frame_columns: Iterable[str], property_names: Iterable[str]) -> list[str]: ...

    def requests_for(self, rows: int) -> int: ...

    async def write(self, frame: pd.DataFrame | pa.Table) -> list[RowResult]: ...

    async def write_table(self, table: pa.Table) -> TableResults:
        """:meth:`write` for an Arrow load frame, the outcomes column-wise."""
        ...


def _present(value: Any) -> bool:
    if type(value) is str:  # the common case first: this runs for every cell
        return value != ""
    if value is None or value is pd.NA:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def _full_name(record: Mapping[str, Any]) -> str | None:
    """First and last name in reading order when both are known (a spreadsheet's
    "Last, First" full name included), else whatever name there is."""
    if _present(record.get("first_name")) and _present(record.get("last_name")):
        return f"{record['first_name']} {record['last_name']}"
    if _present(record.get("name")):
        return str(record["name"])
    parts = [str(record[k]) for k in ("first_name", "last_name") if _present(record.get(k))]
    return " ".join(parts) or None


def records_of(frame: pd.DataFrame | pa.Table) -> list[dict[str, Any]]:
    """The rows of a load frame as dicts, built column-wise (``DataFrame.to_dict`` walks
    Arrow-backed columns value by value and is several times slower)."""
    if isinstance(frame, pa.Table):
        columns = {name: frame.column(name).to_pylist() for name in frame.column_names}
    else:
        columns = {name: frame[name].tolist() for name in frame.columns}
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _results(records: list[dict[str, Any]], outcomes: list[RowOutcome]) -> list[RowResult]:
    return [
        RowResult(
            int(records[o.index]["row"]), str(records[o.index]["email"]), o.status, o.id, o.message
        )
        for o in outcomes
    ]


def _properties(value: Any) -> dict[str, Any]:
    """A properties cell: a dict, or the (key, value) pairs Arrow gives for a map."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return dict(value)
    return {}


class SalesManagoContactWriter:
    """``contact/batchupsert``: contact fields, address, birthday, tags and properties."""

    def __init__(self, client: SalesManagoClient) -> None:
        self.client = client

    def check(self, frame_columns: Iterable[str], property_names: Iterable[str]) -> list[str]:
        """SALESmanago accepts any property name: nothing to check beyond the email."""
        return [] if "email" in set(frame_columns) else ["the input has no email column"]

    def requests_for(self, rows: int) -> int:
        return math.ceil(rows / 1000)

    @staticmethod
    def entry(record: Mapping[str, Any]) -> dict[str, Any]:
        contact: dict[str, Any] = {}
        for column, key in CONTACT_KEYS.items():
            if _present(record.get(column)):
                contact[key] = str(record[column])
        name = _full_name(record)
        if name:
            contact["name"] = name
        address = {
            key: str(record[column])
            for column, key in ADDRESS_KEYS.items()
            if _present(record.get(column))
        }
        if address:
            contact["address"] = address
        entry: dict[str, Any] = {"contact": contact}
        if _present(record.get("province")):
            entry["province"] = str(record["province"])
        if _present(record.get("birthday")):
            entry["birthday"] = str(record["birthday"])
        tags = record.get("tags")
        if isinstance(tags, list | tuple) and tags:
            entry["tags"] = [str(t) for t in tags]
        properties = _properties(record.get("properties"))
        if properties:
            entry["properties"] = {str(k): str(v) for k, v in properties.items() if _present(v)}
        return entry

    def _prepare(self, frame: pd.DataFrame | pa.Table) -> tuple[list[dict[str, Any]], list[Any]]:
        records = records_of(frame)
        return records, [self.entry(record) for record in records]

    def encode(self, table: pa.Table) -> tuple[list[int], list[str | None], list[str]]:
        """Rows, emails and the entries as JSON text, built column-wise (no dict per row)."""
        entries = salesmanago_entries(table, self.entry).to_pylist()
        return table["row"].to_pylist(), table["email"].to_pylist(), entries

    async def write(self, frame: pd.DataFrame | pa.Table) -> list[RowResult]:
        if isinstance(frame, pa.Table):  # an import's spilled rows: the cheap path
            return (await self.write_table(frame)).as_rows()
        records, entries = await asyncio.to_thread(self._prepare, frame)
        return _results(records, await self.client.batch_upsert(entries))

    async def write_table(self, table: pa.Table) -> TableResults:
        rows, emails, entries = await asyncio.to_thread(self.encode, table)
        outcomes = await self.client.batch_upsert_encoded(entries, emails)
        return TableResults(rows, emails, outcomes)  # type: ignore[arg-type]


class SalesNexusContactWriter:
    """``import-contacts`` matched on the email field (``create-if-not-updated``, no null match).

    Field ids come from the account's catalog at run time; custom properties go to the contact
    field of the same name, and :meth:`check` reports any that the catalog lacks.
    """

    def __init__(self, client: SalesNexusClient, catalog: FieldCatalog) -> None:
        self.client = client
        self.catalog = catalog
        self._email_id = catalog.id_for("contact", "Email")
        self._ids = {
            column: catalog.id_for("contact", name)
            for column, name in SALESNEXUS_FIELD_NAMES.items()
            if _has_field(catalog, name)
        }
        self._custom = {f.name.casefold(): f.id for f in catalog.fields_for("contact")}

    def check(self, frame_columns: Iterable[str], property_names: Iterable[str]) -> list[str]:
        problems = []
        for column in frame_columns:
            name = SALESNEXUS_FIELD_NAMES.get(column)
            if name is not None and column not in self._ids:
                problems.append(f"SalesNexus has no contact field {name!r} (for column {column})")
        for prop in property_names:
            if prop.casefold() not in self._custom:
                problems.append(
                    f"SalesNexus has no contact field named {prop!r}: create it in SalesNexus, "
                    "map the column to a field that exists, or ignore unmapped columns"
                )
        return problems

    def requests_for(self, rows: int) -> int:
        calls = math.ceil(rows / 1000)
        return math.ceil(calls / self.client.config.calls_per_request)

    def entry(self, record: Mapping[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"_toMatch": [self._email_id]}
        for column, field_id in self._ids.items():
            value = record.get(column)
            if column == "tags":
                if isinstance(value, list | tuple) and value:
                    entry[str(field_id)] = ", ".join(str(t) for t in value)
            elif column == "birthday":
                if _present(value):
                    text = str(value)
                    entry[str(field_id)] = f"{text[:4]}-{text[4:6]}-{text[6:8]}"
            elif column == "name":
                name = _full_name(record)
                if name:
                    entry[str(field_id)] = name
            elif _present(value):
                entry[str(field_id)] = str(value)
        for key, value in _properties(record.get("properties")).items():
            field_id = self._custom.get(str(key).casefold())
            if field_id is not None and _present(value):
                entry[str(field_id)] = str(value)
        return entry

    def _prepare(self, frame: pd.DataFrame | pa.Table) -> tuple[list[dict[str, Any]], list[Any]]:
        records = records_of(frame)
        return records, [self.entry(record) for record in records]

    def encode(self, table: pa.Table) -> tuple[list[int], list[str | None], list[str]]:
        """Rows, emails and the entries as JSON text, built column-wise (no dict per row)."""
        entries = salesnexus_entries(
            table,
            self.entry,
            email_id=self._email_id,
            field_ids=self._ids,
            custom_ids=self._custom,
        ).to_pylist()
        return table["row"].to_pylist(), table["email"].to_pylist(), entries

    async def write(self, frame: pd.DataFrame | pa.Table) -> list[RowResult]:
        if isinstance(frame, pa.Table):  # an import's spilled rows: the cheap path
            return (await self.write_table(frame)).as_rows()
        records, entries = await asyncio.to_thread(self._prepare, frame)
        outcomes = await self.client.import_contacts(
            entries, create_if_not_updated=True, match_nulls=False
        )
        return _results(records, outcomes)

    async def write_table(self, table: pa.Table) -> TableResults:
        rows, emails, entries = await asyncio.to_thread(self.encode, table)
        outcomes = await self.client.import_contacts_encoded(
            entries, create_if_not_updated=True, match_nulls=False
        )
        return TableResults(rows, emails, _columns(outcomes))  # type: ignore[arg-type]


def _columns(outcomes: list[RowOutcome]) -> BatchOutcomes:
    """Per-entry outcomes (in entry order) as columns."""
    return BatchOutcomes(
        [o.id for o in outcomes],
        [o.status for o in outcomes],
        {o.index: o.message or "" for o in outcomes if not o.ok},
    )


def _has_field(catalog: FieldCatalog, name: str) -> bool:
    try:
        catalog.id_for("contact", name)
    except KeyError:
        return False
    return True
