"""Canonical Arrow schemas shared by both CRMs.

Every transform returns a table whose schema ``equals`` one of these. Timestamps are UTC
milliseconds, tags a list of strings, and anything without a canonical column is kept in
``properties`` (string to string), never dropped. Each field carries a one-line ``doc`` in its
metadata. The last column, ``deleted_at``, is null except on the tombstone rows of incremental
exports (``source``, ``source_id`` and ``deleted_at`` set, every other column null).
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms", tz="UTC")
TAGS = pa.list_(pa.string())
PROPERTIES = pa.map_(pa.string(), pa.string())


def _f(name: str, type_: pa.DataType, doc: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


def _source() -> pa.Field:
    return _f("source", pa.string(), '"salesmanago" or "salesnexus"', nullable=False)


def _source_id(doc: str) -> pa.Field:
    return _f("source_id", pa.string(), doc, nullable=False)


def _properties() -> pa.Field:
    return _f("properties", PROPERTIES, "fields without a canonical column, by name")


def _deleted_at() -> pa.Field:
    # Always the last column: readers of older files see it as missing (null) by name.
    return _f(
        "deleted_at",
        TIMESTAMP,
        "set on tombstone rows only (incremental exports): when the deletion was detected, UTC",
    )


CONTACTS = pa.schema(
    [
        _source(),
        _source_id("the contact's id in its CRM"),
        _f("email", pa.string(), "as given, not normalised"),
        _f("name", pa.string(), "full name"),
        _f("first_name", pa.string(), "given name"),
        _f("last_name", pa.string(), "family name"),
        _f("phone", pa.string(), "main phone"),
        _f("fax", pa.string(), "fax number"),
        _f("company", pa.string(), "company name"),
        _f("street", pa.string(), "street and house number"),
        _f("zip_code", pa.string(), "postal code"),
        _f("city", pa.string(), "town or city"),
        _f("province", pa.string(), "region / province / US state"),
        _f("country", pa.string(), "country"),
        _f("birthday", pa.date32(), "full birth date; null unless year, month and day are known"),
        _f("state", pa.string(), "lifecycle state (SALESmanago: PROSPECT, CUSTOMER, ...)"),
        _f("score", pa.int64(), "lead score points"),
        _f("opted_out", pa.bool_(), "unsubscribed from email"),
        _f("owner", pa.string(), "owning user (email)"),
        _f("external_id", pa.string(), "id in a third system"),
        _f("tags", TAGS, "tag names, never null"),
        _f("created_at", TIMESTAMP, "creation time, UTC"),
        _f("modified_at", TIMESTAMP, "last modification time, UTC"),
        _properties(),
        _deleted_at(),
    ]
)

ACTIVITIES = pa.schema(
    [
        _source(),
        _source_id("the activity's id; synthesised from contact id, kind and index if none"),
        _f("contact_id", pa.string(), "source_id of the contact it belongs to"),
        _f("kind", pa.string(), "task|note|visit (SALESmanago), call|meeting|todo (SalesNexus)"),
        _f("subject", pa.string(), "short title (SalesNexus regarding)"),
        _f("details", pa.string(), "body text (task/note text, visited URL, details)"),
        _f("start_time", TIMESTAMP, "start or creation time, UTC"),
        _f("end_time", TIMESTAMP, "end time, UTC"),
        _f("completed", pa.bool_(), "done or not; null when the CRM does not say"),
        _f("result", pa.string(), "outcome text"),
        _f("assigned_to", pa.string(), "user the activity is scheduled for"),
        _properties(),
        _deleted_at(),
    ]
)

SALES = pa.schema(
    [
        _source(),
        _source_id("the sale's id (SALESmanago eventId, SalesNexus sales id)"),
        _f("contact_id", pa.string(), "source_id of the buying contact"),
        _f("status", pa.string(), "open|won|lost"),
        _f("amount", pa.float64(), "value of the sale"),
        _f("details", pa.string(), "description"),
        _f("stage", pa.string(), "pipeline stage name"),
        _f("products", pa.string(), "product identifiers as given"),
        _f("occurred_at", TIMESTAMP, "purchase or close time, UTC"),
        _f("created_at", TIMESTAMP, "creation time, UTC"),
        _f("external_id", pa.string(), "id in a third system"),
        _properties(),
        _deleted_at(),
    ]
)

TABLES: tuple[str, ...] = ("contacts", "activities", "sales")
SCHEMAS: dict[str, pa.Schema] = {"contacts": CONTACTS, "activities": ACTIVITIES, "sales": SALES}
