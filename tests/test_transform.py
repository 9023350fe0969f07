"""Transforms are pure functions: hand-made raw records in, exact canonical rows out."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest

from etl.transform import SCHEMAS, TABLES, FieldCatalog, salesmanago, salesnexus, split_page

TIMESTAMP_MS_UTC = pa.timestamp("ms", tz="UTC")


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ms(*args: int) -> int:
    return int(ts(*args).timestamp() * 1000)


def assert_schema(table: pa.Table, name: str) -> None:
    assert table.schema.equals(SCHEMAS[name]), table.schema


def live_rows(table: pa.Table) -> list[dict[str, object]]:
    """The rows without ``deleted_at``, which transforms leave null (tombstones only set it)."""
    assert table.column("deleted_at").null_count == table.num_rows
    return table.drop_columns(["deleted_at"]).to_pylist()


# --------------------------------------------------------------------------- schemas


def test_schemas_shape() -> None:
    assert TABLES == ("contacts", "activities", "sales")
    for name in TABLES:
        schema = SCHEMAS[name]
        assert schema.names[:2] == ["source", "source_id"]
        assert not schema.field("source").nullable
        assert not schema.field("source_id").nullable
        assert schema.field("properties").type == pa.map_(pa.string(), pa.string())
        assert all(f.metadata and b"doc" in f.metadata for f in schema)
    assert SCHEMAS["contacts"].field("birthday").type == pa.date32()
    assert SCHEMAS["contacts"].field("tags").type == pa.list_(pa.string())
    assert SCHEMAS["sales"].field("occurred_at").type == pa.timestamp("ms", tz="UTC")
    for name in TABLES:  # the tombstone marker: last, nullable, UTC ms
        last = SCHEMAS[name].field(len(SCHEMAS[name]) - 1)
        assert (last.name, last.type, last.nullable) == ("deleted_at", TIMESTAMP_MS_UTC, True)


# --------------------------------------------------------------------------- SALESmanago


def _details(**given: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {f"detail{i}": None for i in range(1, 21)}
    out.update(given)
    return out


def sm_page() -> list[dict[str, Any]]:
    full = {
        "id": "99cdc5fe-7376-436e-acb5-7180c97dadb6",
        "name": "Zoë  Łucja Wąsowska-Nowak",
        "email": "Zoe.Wasowska@Example.PL",
        "phone": "+48 123 456 789",
        "fax": "",
        "score": 775,
        "state": "PROSPECT",
        "optedOut": True,
        "optedOutPhone": False,
        "deleted": False,
        "invalid": True,
        "company": "Benhauer Sp. z o.o.",
        "externalId": "crm-7",
        "address": {
            "streetAddress": "Grzegórzecka 21",
            "zipCode": "",
            "city": "Kraków",
            "country": "Polska",
        },
        "birthdayYear": 1987,
        "birthdayMonth": 2,
        "birthdayDay": 29,  # not a leap year: kept raw
        "province": "Małopolska",
        "mainContactOwner": "admin@vendor.pl",
        "modifiedOn": ms(2016, 11, 15, 11, 24, 34),
        "createdOn": ms(2015, 5, 29, 8, 22, 7),
        "lastVisit": 1481528930000,  # unknown key
        "contactTags": [
            {"tag": "VIP", "tagName": "VIP", "score": 3, "createdOn": 1, "tagWithScore": "VIP (3)"},
            {"tag": ""},
            None,
            {"tag": "ŁÓDŹ 2024"},
        ],
        "properties": [
            {"name": "shoe size", "value": "42"},
            {"name": "nickname", "value": "Zózia 🐝"},
            {"name": "blank", "value": ""},
            {"name": None, "value": "orphan"},
        ],
        "contactExtEvents": [
            {
                "eventId": "bd2fd558-29da-49b7-be31-6ee551cd5e13",
                "date": ms(2015, 6, 4, 20, 23, 39),
                "description": "Zamówienie №17",
                "products": "7,6",
                "location": "sklep-krakow",
                "value": 57.69,
                "contactExtEventType": "PURCHASE",
                **_details(detail1="card", detail3="gift ✓"),
                "externalId": "ord-17",
            },
            {
                "eventId": "cart-1",
                "date": ms(2015, 6, 4, 20, 0, 0),
                "description": "Cart",
                "value": 10.0,
                "contactExtEventType": "CART",
            },
            {"date": ms(2016, 1, 2, 3, 4, 5), "value": 100, "contactExtEventType": "PURCHASE"},
        ],
        "contactTasks": [
            {
                "id": "395c5276-a40f-417c-bee8-1d6e80373adb",
                "note": "Zadzwonić ☎",
                "date": ms(2016, 11, 15, 23, 0, 0),
                "cc": "",
                "reminder": ms(2016, 11, 15, 22, 45, 0),
            },
        ],
        "contactNotes": [
            None,
            {"note": "Prefers email", "date": ms(2016, 11, 15, 11, 19, 30), "priv": False},
        ],
        "contactVisits": [
            {
                "conversationIntId": None,
                "host": "10.10.10.10",
                "time": 1328050810504,
                "duration": 4500,
                "visitSource": "SEARCH_ENGINE",
                "visitSourceHost": "google.pl",
                "visitSourceKeywords": "buty",
                "visitScore": 1,
                "url": "/test.htm",
                "location": None,
            },
            {"time": ms(2020, 1, 1), "url": "/pricing", "duration": None},
        ],
    }
    sparse = {"id": "c-2", "birthdayMonth": 12, "birthdayDay": 24, "contactTasks": None}
    return [full, None, sparse]


FULL_ID = "99cdc5fe-7376-436e-acb5-7180c97dadb6"


def test_salesmanago_contacts() -> None:
    table = salesmanago.contacts_table(sm_page())
    assert_schema(table, "contacts")
    assert live_rows(table) == [
        {
            "source": "salesmanago",
            "source_id": FULL_ID,
            "email": "Zoe.Wasowska@Example.PL",
            "name": "Zoë  Łucja Wąsowska-Nowak",
            "first_name": "Zoë",
            "last_name": "Łucja Wąsowska-Nowak",
            "phone": "+48 123 456 789",
            "fax": None,
            "company": "Benhauer Sp. z o.o.",
            "street": "Grzegórzecka 21",
            "zip_code": None,
            "city": "Kraków",
            "province": "Małopolska",
            "country": "Polska",
            "birthday": None,
            "state": "PROSPECT",
            "score": 775,
            "opted_out": True,
            "owner": "admin@vendor.pl",
            "external_id": "crm-7",
            "tags": ["VIP", "ŁÓDŹ 2024"],
            "created_at": ts(2015, 5, 29, 8, 22, 7),
            "modified_at": ts(2016, 11, 15, 11, 24, 34),
            "properties": [
                ("shoe size", "42"),
                ("nickname", "Zózia 🐝"),
                ("birthday_raw", "1987-02-29"),
                ("invalid", "true"),
            ],
        },
        {
            "source": "salesmanago",
            "source_id": "c-2",
            "email": None,
            "name": None,
            "first_name": None,
            "last_name": None,
            "phone": None,
            "fax": None,
            "company": None,
            "street": None,
            "zip_code": None,
            "city": None,
            "province": None,
            "country": None,
            "birthday": None,
            "state": None,
            "score": None,
            "opted_out": None,
            "owner": None,
            "external_id": None,
            "tags": [],
            "created_at": None,
            "modified_at": None,
            "properties": [("birthday_month_day", "12-24")],
        },
    ]


def test_salesmanago_birthday_and_single_name() -> None:
    table = salesmanago.contacts_table(
        [
            {
                "id": "a",
                "name": "Cher",
                "birthdayYear": 1946,
                "birthdayMonth": 5,
                "birthdayDay": 20,
            },
            {"id": "b", "name": "  ", "birthdayYear": 2000},
        ]
    )
    rows = table.select(["first_name", "last_name", "birthday", "properties"]).to_pylist()
    assert rows == [
        {
            "first_name": "Cher",
            "last_name": None,
            "birthday": date(1946, 5, 20),
            "properties": [],
        },
        {
            "first_name": None,
            "last_name": None,
            "birthday": None,
            "properties": [("birthday_raw", "2000--")],
        },
    ]


def test_salesmanago_activities() -> None:
    table = salesmanago.activities_table(sm_page())
    assert_schema(table, "activities")
    common = {
        "source": "salesmanago",
        "contact_id": FULL_ID,
        "subject": None,
        "completed": None,
        "result": None,
        "assigned_to": None,
    }
    assert live_rows(table) == [
        {
            **common,
            "source_id": "395c5276-a40f-417c-bee8-1d6e80373adb",
            "kind": "task",
            "details": "Zadzwonić ☎",
            "start_time": ts(2016, 11, 15, 23, 0, 0),
            "end_time": None,
            "properties": [("reminder", "2016-11-15T22:45:00.000Z")],
        },
        {
            **common,
            "source_id": f"{FULL_ID}:note:1",
            "kind": "note",
            "details": "Prefers email",
            "start_time": ts(2016, 11, 15, 11, 19, 30),
            "end_time": None,
            "properties": [("priv", "false")],
        },
        {
            **common,
            "source_id": f"{FULL_ID}:visit:0",
            "kind": "visit",
            "details": "/test.htm",
            "start_time": datetime(2012, 1, 31, 23, 0, 10, 504000, tzinfo=UTC),
            "end_time": datetime(2012, 1, 31, 23, 0, 15, 4000, tzinfo=UTC),
            "properties": [
                ("host", "10.10.10.10"),
                ("visitSource", "SEARCH_ENGINE"),
                ("visitSourceHost", "google.pl"),
                ("visitSourceKeywords", "buty"),
                ("visitScore", "1"),
                ("duration", "4500"),
            ],
        },
        {
            **common,
            "source_id": f"{FULL_ID}:visit:1",
            "kind": "visit",
            "details": "/pricing",
            "start_time": ts(2020, 1, 1),
            "end_time": None,
            "properties": [],
        },
    ]


def test_salesmanago_sales_only_purchases() -> None:
    table = salesmanago.sales_table(sm_page())
    assert_schema(table, "sales")
    assert live_rows(table) == [
        {
            "source": "salesmanago",
            "source_id": "bd2fd558-29da-49b7-be31-6ee551cd5e13",
            "contact_id": FULL_ID,
            "status": "won",
            "amount": 57.69,
            "details": "Zamówienie №17",
            "stage": None,
            "products": "7,6",
            "occurred_at": ts(2015, 6, 4, 20, 23, 39),
            "created_at": ts(2015, 6, 4, 20, 23, 39),
            "external_id": "ord-17",
            "properties": [
                ("location", "sklep-krakow"),
                ("detail1", "card"),
                ("detail3", "gift ✓"),
            ],
        },
        {
            "source": "salesmanago",
            "source_id": f"{FULL_ID}:event:2",
            "contact_id": FULL_ID,
            "status": "won",
            "amount": 100.0,
            "details": None,
            "stage": None,
            "products": None,
            "occurred_at": ts(2016, 1, 2, 3, 4, 5),
            "created_at": ts(2016, 1, 2, 3, 4, 5),
            "external_id": None,
            "properties": [],
        },
    ]
    assert "cart-1" not in table.column("source_id").to_pylist()


def test_salesmanago_split_page_matches_single_tables() -> None:
    page = sm_page()
    tables = split_page(page)
    assert list(tables) == list(TABLES)
    assert tables["contacts"].equals(salesmanago.contacts_table(page))
    assert tables["activities"].equals(salesmanago.activities_table(page))
    assert tables["sales"].equals(salesmanago.sales_table(page))


def test_salesmanago_empty_page() -> None:
    for name, table in split_page([]).items():
        assert table.num_rows == 0
        assert_schema(table, name)


def test_salesmanago_odd_value_types_are_coerced() -> None:
    page = [
        {
            "id": 123456,
            "score": "12",
            "optedOut": "false",
            "birthdayYear": "1990",
            "birthdayMonth": 7,
            "birthdayDay": 4.0,
            "createdOn": "1432887727000",
            "address": "not an object",
            "contactTags": [{"tag": 5}],
            "properties": [{"name": "visits", "value": 17}, {"name": "vip", "value": True}],
            "contactExtEvents": [
                {"eventId": "p1", "value": "129.99", "contactExtEventType": "purchase"},
                {"eventId": "p2", "value": "n/a", "contactExtEventType": "PURCHASE"},
            ],
            "contactVisits": [{"time": 1000, "duration": "250", "visitScore": "x"}],
        }
    ]
    tables = split_page(page)
    contact = tables["contacts"].to_pylist()[0]
    assert contact["source_id"] == "123456"
    assert contact["score"] == 12
    assert contact["opted_out"] is False
    assert contact["birthday"] == date(1990, 7, 4)
    assert contact["created_at"] == ts(2015, 5, 29, 8, 22, 7)
    assert contact["street"] is None
    assert contact["tags"] == ["5"]
    assert contact["properties"] == [("visits", "17"), ("vip", "true")]
    sales = tables["sales"].select(["source_id", "amount"]).to_pylist()
    assert sales == [{"source_id": "p1", "amount": 129.99}, {"source_id": "p2", "amount": None}]
    visit = tables["activities"].to_pylist()[0]
    assert visit["end_time"] == datetime(1970, 1, 1, 0, 0, 1, 250000, tzinfo=UTC)
    assert visit["properties"] == [("duration", "250")]
    for name, table in tables.items():
        assert_schema(table, name)


def test_salesmanago_contact_without_id_is_an_error() -> None:
    with pytest.raises(ValueError, match="without an id at position 1"):
        salesmanago.contacts_table([{"id": "a"}, {"name": "No Id"}])


def _answer(contacts: Any, **envelope: Any) -> bytes:
    return orjson.dumps({"success": True, "message": [], "contacts": contacts, **envelope})


def test_salesmanago_decode_page_equals_decoded_records() -> None:
    page = [*sm_page(), None, {"id": "x-1", "unknown": {"nested": [1, 2]}, "contactTags": None}]
    decoded = salesmanago.decode_page(_answer(page, hasMore=True))
    assert decoded is not None
    records, has_more = decoded
    assert has_more is True
    assert salesmanago.contact_ids(records) == salesmanago.contact_ids(page)
    for name, table in split_page(records).items():
        assert table.equals(split_page(page)[name]), name
    # several pages at once, Arrow and decoded JSON mixed: the same rows as page by page
    pages = [records, page[:1], records]
    records_of_pages, page_of = salesmanago.concat_pages(pages)
    joined = split_page(records_of_pages, TABLES, page_of)
    for name in TABLES:
        expected = pa.concat_tables([split_page(p)[name] for p in pages])
        assert joined[name].equals(expected), name


@pytest.mark.parametrize(
    "body",
    [
        _answer([{"id": 123456}]),  # a number where a string is expected
        _answer([{"id": "a", "score": 12.0}]),  # a float where an integer is expected
        _answer([{"id": "a", "optedOut": 1}]),
        _answer([], success=False),
        b'{"success":true,"contacts":[{"id":"a","id":"b"}]}',
        b'{"success":true,"contacts":[{"id":"a","contactExtEvents":[{"value":NaN}]}]}',
        b'\xef\xbb\xbf{"success":true,"contacts":[]}',
        b'{"success":true,"contacts":[{"id":"\xff"}]}',
        b'{"success":true,"contacts":[]}{"success":true,"contacts":[]}',
        b"[]",
        b'{"success":true,"contacts":[',
    ],
)
def test_salesmanago_decode_page_leaves_anything_unusual_to_the_json_decoder(body: bytes) -> None:
    assert salesmanago.decode_page(body) is None


# --------------------------------------------------------------------------- SalesNexus

DEFAULT_FIELDS = [
    (47, "Company", "contact", "text"),
    (48, "Full Name", "contact", "text"),
    (49, "First Name", "contact", "text"),
    (50, "Last Name", "contact", "text"),
    (51, "Phone", "contact", "phone"),
    (52, "Mobile Phone", "contact", "phone"),
    (53, "Street", "contact", "text"),
    (54, "City", "contact", "text"),
    (55, "State", "contact", "text"),
    (56, "Zip Code", "contact", "text"),
    (57, "Country", "contact", "text"),
    (58, "Birthday", "contact", "date"),
    (59, "Tags", "contact", "text"),
    (60, "Record Manager", "contact", "email"),
    (61, "Created", "contact", "datetime"),
    (62, "Modified", "contact", "datetime"),
    (133, "Email", "contact", "email"),
    (300, "Lead Source", "contact", "pick-list"),
    (301, "Customer Tier", "contact", "pick-list"),
    (302, "Newsletter Opt-In", "contact", "boolean"),
    (303, "Annual Revenue", "contact", "number"),
    (220, "Contact ID", "sales", "number"),
    (222, "Status", "sales", "number"),
    (231, "Details", "sales", "text"),
    (234, "Sales State", "sales", "text"),
    (235, "Amount", "sales", "number"),
    (236, "Close Date", "sales", "date"),
    (237, "Created", "sales", "datetime"),
    (310, "Product Line", "sales", "pick-list"),
    (400, "Details", "note", "text"),
    (401, "Contact ID", "note", "number"),
    (402, "Type", "note", "text"),
    (500, "Regarding", "activity", "text"),
    (501, "Details", "activity", "text"),
]
ODD_ID = 9_000_017  # a custom field with an unusual id


def catalog_api(offset: int = 0) -> list[dict[str, Any]]:
    fields = [
        {"id": fid + offset, "name": name, "table": table, "type": type_}
        for fid, name, table, type_ in DEFAULT_FIELDS
    ]
    fields.append({"id": ODD_ID, "name": "Ulubiony kolor 🎨", "table": "contact", "type": "text"})
    return fields


def by_name(offset: int, record: dict[str, str], table: str = "contact") -> dict[str, str]:
    """Key a record by the field ids of a catalog shifted by ``offset``."""
    ids = {(t, name): fid + offset for fid, name, t, _ in DEFAULT_FIELDS}
    ids[("contact", "Ulubiony kolor 🎨")] = ODD_ID
    return {
        (str(ids[(table, name)]) if (table, name) in ids else name): value
        for name, value in record.items()
    }


def test_field_catalog_lookups() -> None:
    catalog = FieldCatalog.from_api(catalog_api(offset=1000))
    assert catalog.id_for("contact", "Email") == 1133
    assert catalog.id_for("contacts", "  full NAME ") == 1048
    assert catalog.id_for("sales", "created") == 1237
    assert catalog.id_for("contact", "created") == 1061
    assert catalog.id_for("activity", "Details") == 1501
    assert catalog.name_for(1222) == "Status"
    assert catalog.name_for("9000017") == "Ulubiony kolor 🎨"
    assert catalog.type_for(1058) == "date"
    assert [f.name for f in catalog.fields_for("note")] == ["Details", "Contact ID", "Type"]
    with pytest.raises(KeyError, match=r"field 'Email' not found in table 'sales'"):
        catalog.id_for("sales", "Email")
    with pytest.raises(KeyError, match="field id 58"):
        catalog.name_for(58)
    assert catalog == FieldCatalog.from_api(catalog_api(offset=1000))
    hash(catalog)


CONTACT_RECORDS = [
    {
        "Email": "Ana.Muñoz@Example.com ",
        "Full Name": "Ana María Muñoz",
        "First Name": "",
        "Last Name": "",
        "Phone": "+1 (512) 555-0100",
        "Mobile Phone": "+1 512 555 0199",
        "Company": "Acme, Inc.",
        "Street": "1 Main St",
        "City": "Austin",
        "State": "TX",
        "Zip Code": "78701",
        "Country": "USA",
        "Birthday": "1985-07-14",
        "Tags": " vip, newsletter ,,  ñandú ",
        "Record Manager": "owner@acme.test",
        "Created": "2026-11-23T09:30:00Z",
        "Modified": "2026-11-24T10:00:00.250Z",
        "Lead Source": "Web",
        "Customer Tier": "",
        "Newsletter Opt-In": "true",
        "Annual Revenue": "1250000.50",
        "Ulubiony kolor 🎨": "zielony",
        "777": "from a field the catalog lacks",
    },
    {
        "Email": "",
        "Full Name": "",
        "First Name": "Kenji",
        "Last Name": "Satō",
        "Birthday": "1990-02-30",
        "Tags": "",
        "Created": "not a date",
    },
    {"Full Name": "Björk"},
]


def expected_contacts() -> list[dict[str, Any]]:
    blank = {column: None for column in SCHEMAS["contacts"].names}
    return [
        {
            **blank,
            "source": "salesnexus",
            "source_id": "101",
            "email": "Ana.Muñoz@Example.com ",
            "name": "Ana María Muñoz",
            "first_name": "Ana",
            "last_name": "María Muñoz",
            "phone": "+1 (512) 555-0100",
            "company": "Acme, Inc.",
            "street": "1 Main St",
            "zip_code": "78701",
            "city": "Austin",
            "province": "TX",
            "country": "USA",
            "birthday": date(1985, 7, 14),
            "owner": "owner@acme.test",
            "tags": ["vip", "newsletter", "ñandú"],
            "created_at": ts(2026, 11, 23, 9, 30),
            "modified_at": datetime(2026, 11, 24, 10, 0, 0, 250000, tzinfo=UTC),
            "properties": [
                ("Mobile Phone", "+1 512 555 0199"),
                ("Lead Source", "Web"),
                ("Newsletter Opt-In", "true"),
                ("Annual Revenue", "1250000.50"),
                ("Ulubiony kolor 🎨", "zielony"),
                ("field_777", "from a field the catalog lacks"),
            ],
        },
        {
            **blank,
            "source": "salesnexus",
            "source_id": "102",
            "name": "Kenji Satō",
            "first_name": "Kenji",
            "last_name": "Satō",
            "tags": [],
            "properties": [("Birthday", "1990-02-30"), ("Created", "not a date")],
        },
        {
            **blank,
            "source": "salesnexus",
            "source_id": "103",
            "name": "Björk",
            "first_name": "Björk",
            "tags": [],
            "properties": [],
        },
    ]


@pytest.mark.parametrize("offset", [0, 1000, 7])
def test_salesnexus_contacts_resolve_names_at_run_time(offset: int) -> None:
    catalog = FieldCatalog.from_api(catalog_api(offset))
    records = [by_name(offset, r) for r in CONTACT_RECORDS]
    # the record keys really differ per catalog
    assert ("133" in records[0]) == (offset == 0)
    table = salesnexus.contacts_table(["101", "102", "103"], records, catalog)
    assert_schema(table, "contacts")
    assert table.to_pylist() == expected_contacts()


def test_salesnexus_contacts_empty_and_mismatch() -> None:
    catalog = FieldCatalog.from_api(catalog_api())
    table = salesnexus.contacts_table([], [], catalog)
    assert table.num_rows == 0
    assert_schema(table, "contacts")
    with pytest.raises(ValueError, match="2 ids for 1 records"):
        salesnexus.contacts_table(["1", "2"], [{}], catalog)


def test_salesnexus_contacts_tolerate_non_string_values() -> None:
    catalog = FieldCatalog.from_api(catalog_api())
    records = [{"48": "Jan Nowak", "303": 1200}, {"48": None, "303": "12.5", "302": False}]
    table = salesnexus.contacts_table(["1", "2"], records, catalog)
    assert table.column("properties").to_pylist() == [
        [("Annual Revenue", "1200")],
        [("Annual Revenue", "12.5"), ("Newsletter Opt-In", "false")],
    ]
    assert table.column("name").to_pylist() == ["Jan Nowak", None]


def test_salesnexus_arrow_pages_give_the_same_rows() -> None:
    catalog = FieldCatalog.from_api(catalog_api())
    records = [by_name(0, r) for r in CONTACT_RECORDS]
    first, second = records[:2], [*records[2:], {"9999": "extra field"}, {}]
    ids = [str(i) for i in range(len(first) + len(second))]
    arrays = [salesnexus.record_array(first), salesnexus.record_array(second)]
    assert all(isinstance(a, pa.StructArray) for a in arrays)
    assert arrays[0].type != arrays[1].type  # different keys: concatenated by name
    expected = salesnexus.contacts_table(ids, [*first, *second], catalog)
    got = salesnexus.contacts_table(ids, salesnexus.concat_records(arrays), catalog)
    assert got.equals(expected)
    mixed = salesnexus.concat_records([arrays[0], second])
    assert salesnexus.contacts_table(ids, mixed, catalog).equals(expected)
    odd = [{"48": "Jan Nowak", "303": 1200}]
    assert salesnexus.record_array(odd) is odd  # not all strings: left to the transforms


def test_salesnexus_activities() -> None:
    records = [
        {
            "activity-id": "A-1",
            "schedule-with": "101",
            "schedule-for": "7",
            "regarding": "Demo call ☎",
            "details": "Walk through pricing",
            "color": "FF8800",
            "start-time": "2026-11-23T09:30:00Z",
            "end-time": "2026-11-23T10:00:00Z",
            "type": "call",
            "timeless": "false",
            "completed": "true",
            "result": "Interested",
        },
        {
            "activity-id": "",
            "schedule-with": "102",
            "schedule-for": "",
            "regarding": "",
            "details": "",
            "color": "",
            "start-time": "",
            "end-time": "2026-13-01T00:00:00Z",
            "type": "todo",
            "timeless": "true",
            "completed": "FALSE",
            "result": "",
            "priority": "high",
        },
    ]
    table = salesnexus.activities_table(["A-1", "A-2"], records)
    assert_schema(table, "activities")
    assert live_rows(table) == [
        {
            "source": "salesnexus",
            "source_id": "A-1",
            "contact_id": "101",
            "kind": "call",
            "subject": "Demo call ☎",
            "details": "Walk through pricing",
            "start_time": ts(2026, 11, 23, 9, 30),
            "end_time": ts(2026, 11, 23, 10, 0),
            "completed": True,
            "result": "Interested",
            "assigned_to": "7",
            "properties": [("color", "FF8800"), ("timeless", "false")],
        },
        {
            "source": "salesnexus",
            "source_id": "A-2",
            "contact_id": "102",
            "kind": "todo",
            "subject": None,
            "details": None,
            "start_time": None,
            "end_time": None,
            "completed": False,
            "result": None,
            "assigned_to": None,
            "properties": [
                ("timeless", "true"),
                ("priority", "high"),
                ("end-time", "2026-13-01T00:00:00Z"),
            ],
        },
    ]
    empty = salesnexus.activities_table([], [])
    assert empty.num_rows == 0
    assert_schema(empty, "activities")


@pytest.mark.parametrize("offset", [0, 5000])
def test_salesnexus_sales(offset: int) -> None:
    catalog = FieldCatalog.from_api(catalog_api(offset))
    records = [
        {
            "Contact ID": "101",
            "Status": "1",
            "Details": "Annual licence — 3 seats",
            "Sales State": "Closed",
            "Amount": "1234.50",
            "Close Date": "2026-11-30",
            "Created": "2026-11-01T08:00:00Z",
            "Product Line": "Enterprise",
        },
        {"Contact ID": "102", "Status": "0", "Amount": "", "Close Date": ""},
        {"Contact ID": "103", "Status": "2", "Amount": "99"},
        {"Contact ID": "", "Status": "9", "Amount": "twelve", "Close Date": "2026-02-30"},
    ]
    keyed = [by_name(offset, r, table="sales") for r in records]
    table = salesnexus.sales_table(["S1", "S2", "S3", "S4"], keyed, catalog)
    assert_schema(table, "sales")
    blank = {column: None for column in SCHEMAS["sales"].names}
    assert table.to_pylist() == [
        {
            **blank,
            "source": "salesnexus",
            "source_id": "S1",
            "contact_id": "101",
            "status": "won",
            "amount": 1234.5,
            "details": "Annual licence — 3 seats",
            "stage": "Closed",
            "occurred_at": ts(2026, 11, 30),
            "created_at": ts(2026, 11, 1, 8, 0),
            "properties": [("Product Line", "Enterprise")],
        },
        {
            **blank,
            "source": "salesnexus",
            "source_id": "S2",
            "contact_id": "102",
            "status": "open",
            "properties": [],
        },
        {
            **blank,
            "source": "salesnexus",
            "source_id": "S3",
            "contact_id": "103",
            "status": "lost",
            "amount": 99.0,
            "properties": [],
        },
        {
            **blank,
            "source": "salesnexus",
            "source_id": "S4",
            "properties": [
                ("status_raw", "9"),
                ("Amount", "twelve"),
                ("Close Date", "2026-02-30"),
            ],
        },
    ]


def test_salesnexus_inputs_are_not_mutated() -> None:
    catalog = FieldCatalog.from_api(catalog_api())
    records = [by_name(0, r) for r in CONTACT_RECORDS]
    before = copy.deepcopy(records)
    salesnexus.contacts_table(["1", "2", "3"], records, catalog)
    assert records == before


def test_explode_handles_sliced_and_null_backed_lists() -> None:
    from etl.transform._arrow import explode

    lists = pa.ListArray.from_arrays(
        pa.array([0, 2, 4, 5], pa.int32()),
        pa.array(["a", "b", None, "d", "e"]),
        mask=pa.array([False, True, False]),
    )
    whole = explode(lists)
    assert whole.parent.tolist() == [0, 0, 2]
    assert whole.position.tolist() == [0, 1, 0]
    assert whole.items.to_pylist() == ["a", "b", "e"]
    tail = explode(lists[1:])
    assert (tail.parent.tolist(), tail.position.tolist(), tail.items.to_pylist()) == (
        [1],
        [0],
        ["e"],
    )
