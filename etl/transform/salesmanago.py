"""SALESmanago contacts (one ``paginatedContactList`` page) to the canonical tables.

One page yields all three tables: the contacts, their tasks/notes/visits as activities, and
their PURCHASE external events as sales. Everything is computed column-wise on an Arrow struct
array built with the explicit ``RAW_CONTACT`` type; unknown keys are ignored, missing ones are
null. Values of an unexpected JSON type (say ``"value": "12.5"``) make the fast conversion fail;
only then is the page converted field by field, coercing value by value just the fields that
fail (a string of digits becomes a number, a number a string, garbage null).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from etl.transform import _arrow as A
from etl.transform.schemas import ACTIVITIES, CONTACTS, SALES

SOURCE = "salesmanago"

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

RAW_ADDRESS = pa.struct(
    [("streetAddress", _S), ("zipCode", _S), ("city", _S), ("country", _S)],
)
RAW_TAG = pa.struct(
    [("tag", _S), ("tagName", _S), ("score", _I), ("createdOn", _I), ("tagWithScore", _S)],
)
RAW_PROPERTY = pa.struct([("name", _S), ("value", _S)])
EVENT_DETAILS = tuple(f"detail{i}" for i in range(1, 21))
RAW_EXT_EVENT = pa.struct(
    [
        ("eventId", _S),
        ("date", _I),
        ("description", _S),
        ("products", _S),
        ("location", _S),
        ("value", _F),
        ("contactExtEventType", _S),
        *[(d, _S) for d in EVENT_DETAILS],
        ("externalId", _S),
    ]
)
RAW_TASK = pa.struct([("id", _S), ("note", _S), ("date", _I), ("cc", _S), ("reminder", _I)])
RAW_NOTE = pa.struct([("note", _S), ("date", _I), ("priv", _B)])
RAW_VISIT = pa.struct(
    [
        ("conversationIntId", _I),
        ("host", _S),
        ("time", _I),
        ("duration", _I),
        ("visitSource", _S),
        ("visitSourceHost", _S),
        ("visitSourceKeywords", _S),
        ("visitScore", _I),
        ("url", _S),
        ("location", _S),
    ]
)
RAW_CONTACT = pa.struct(
    [
        ("id", _S),
        ("name", _S),
        ("email", _S),
        ("phone", _S),
        ("fax", _S),
        ("score", _I),
        ("state", _S),
        ("optedOut", _B),
        ("optedOutPhone", _B),
        ("deleted", _B),
        ("invalid", _B),
        ("company", _S),
        ("externalId", _S),
        ("address", RAW_ADDRESS),
        ("birthdayYear", _I),
        ("birthdayMonth", _I),
        ("birthdayDay", _I),
        ("province", _S),
        ("mainContactOwner", _S),
        ("modifiedOn", _I),
        ("createdOn", _I),
        ("contactTags", pa.list_(RAW_TAG)),
        ("properties", pa.list_(RAW_PROPERTY)),
        ("contactExtEvents", pa.list_(RAW_EXT_EVENT)),
        ("contactTasks", pa.list_(RAW_TASK)),
        ("contactNotes", pa.list_(RAW_NOTE)),
        ("contactVisits", pa.list_(RAW_VISIT)),
    ]
)

# Visit `duration` is taken to be in the unit of `time` (epoch milliseconds); the raw value
# is kept in properties["duration"] as well.
VISIT_DURATION_MS = 1
VISIT_PROPERTIES = (
    "host",
    "visitSource",
    "visitSourceHost",
    "visitSourceKeywords",
    "visitScore",
    "location",
    "conversationIntId",
    "duration",
)
# Contact flags without a canonical column, kept in properties (as "true") when set.
CONTACT_FLAGS = {"optedOutPhone": "opted_out_phone", "deleted": "deleted", "invalid": "invalid"}

# A page of contacts: decoded JSON records, or already a ``RAW_CONTACT`` array (decode_page).
Records = Sequence[Mapping[str, Any]] | pa.StructArray
_CONVERSION_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)

_PAGE = pa.schema([("success", _B), ("hasMore", _B), ("contacts", pa.list_(RAW_CONTACT))])
_PAGE_PARSE = pa_json.ParseOptions(explicit_schema=_PAGE, unexpected_field_behavior="ignore")
_OBJECT_START = re.compile(rb"[ \t\r\n]*\{")


def decode_page(body: bytes) -> tuple[pa.StructArray, bool] | None:
    """A ``paginatedContactList`` answer straight to (``RAW_CONTACT`` array, ``hasMore``).

    Skips the ~14 MB of Python objects a 1000-contact page decodes to. Arrow's JSON reader is
    stricter than ``pa.array`` on decoded records (a number where a string is expected, a float
    for an integer, a repeated key, anything but one object all fail), and what it accepts but
    JSON does not (a byte order mark, NaN, invalid UTF-8) is refused here; so whenever it
    returns a page, decoding the body and converting its records gives the same array.
    Otherwise (and for an answer without ``"success": true``) it returns None: the caller
    decodes the body the usual way.
    """
    if not _OBJECT_START.match(body):  # Arrow would skip a byte order mark, JSON does not
        return None
    options = pa_json.ReadOptions(use_threads=False, block_size=max(len(body), 1 << 16) + 1)
    try:
        table = pa_json.read_json(pa.BufferReader(body), options, _PAGE_PARSE)
        if table.num_rows != 1 or table.column("success")[0].as_py() is not True:
            return None
        contacts = table.column("contacts").combine_chunks()
        arr = contacts.flatten() if contacts.is_valid()[0].as_py() else pa.array([], RAW_CONTACT)
        arr.validate(full=True)  # invalid UTF-8, which a JSON decoder refuses
    except pa.ArrowException:
        return None
    values = pc.list_flatten(arr.field("contactExtEvents")).field("value")
    if pc.any(pc.invert(pc.is_finite(values))).as_py():  # NaN or Infinity: not JSON
        return None
    if arr.null_count:  # null records are dropped anyway (raw_array)
        arr = arr.filter(arr.is_valid())
    return arr, bool(table.column("hasMore")[0].as_py())


def concat_pages(pages: Sequence[Records]) -> tuple[pa.StructArray, np.ndarray]:
    """Several pages as one ``RAW_CONTACT`` array, with the page index of each contact (for
    ``split_page``'s ``page_of``)."""
    arrays = [raw_array(page) for page in pages]
    page_of = np.repeat(np.arange(len(arrays), dtype=np.int64), [len(a) for a in arrays])
    arr = arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)
    return arr, page_of


def contact_ids(records: Records) -> list[str]:
    """The ids of a page's contacts (null records skipped), as strings."""
    if isinstance(records, pa.StructArray):
        return [str(i) for i in raw_array(records).field("id").to_pylist()]
    return [str(r["id"]) for r in records if r]


def raw_array(records: Records) -> pa.StructArray:
    """The page as a ``RAW_CONTACT`` struct array, null records dropped, ids checked."""
    if isinstance(records, pa.StructArray):
        arr = records
    else:
        try:
            arr = pa.array(records, type=RAW_CONTACT)
        except _CONVERSION_ERRORS:
            arr = _lenient_array(records)
    if arr.null_count:
        arr = arr.filter(arr.is_valid())
    missing = np.flatnonzero(~A.present(pc.struct_field(arr, "id")).to_numpy(zero_copy_only=False))
    if len(missing):
        raise ValueError(f"SALESmanago contact without an id at position {int(missing[0])}")
    return arr


def _lenient_array(records: Records) -> pa.StructArray:
    """Column by column; only a column that fails the fast conversion is coerced value-wise."""
    rows = [r if isinstance(r, Mapping) else None for r in records]
    children = []
    for f in RAW_CONTACT:
        values = [None if r is None else r.get(f.name) for r in rows]
        try:
            children.append(pa.array(values, type=f.type))
        except _CONVERSION_ERRORS:
            children.append(pa.array([_coerce(v, f.type) for v in values], type=f.type))
    mask = pa.array([r is None for r in rows], pa.bool_())
    return pa.StructArray.from_arrays(children, fields=list(RAW_CONTACT), mask=mask)


def contacts_table(records: Records) -> pa.Table:
    return _contacts(raw_array(records))


def activities_table(records: Records) -> pa.Table:
    return _activities(raw_array(records))


def sales_table(records: Records) -> pa.Table:
    return _sales(raw_array(records))


def split_page(
    records: Records,
    tables: Collection[str] = ("contacts", "activities", "sales"),
    page_of: np.ndarray | None = None,
) -> dict[str, pa.Table]:
    """The canonical ``tables`` (all three by default) from one page of contacts.

    For several pages at once (``concat_pages``), ``page_of`` gives each contact's page: the
    rows then come in the order page-by-page calls would give them.
    """
    arr = raw_array(records)
    out: dict[str, pa.Table] = {}
    if "contacts" in tables:
        out["contacts"] = _contacts(arr)
    if "activities" in tables:
        out["activities"] = _activities(arr, page_of)
    if "sales" in tables:
        out["sales"] = _sales(arr)
    return out


def _contacts(arr: pa.StructArray) -> pa.Table:
    n = len(arr)
    rows = np.arange(n, dtype=np.int64)

    def f(name: str) -> pa.Array:
        return pc.struct_field(arr, name)

    address = f("address")
    first, last = A.split_name(f("name"))

    tags = A.explode(f("contactTags"))
    tag = pc.struct_field(tags.items, "tag")
    keep = A.present(tag).to_numpy(zero_copy_only=False)
    tag_list = A.build_list(n, tags.parent[keep], tag.filter(pa.array(keep)))

    birthday, birthday_parts = _birthday(f("birthdayYear"), f("birthdayMonth"), f("birthdayDay"))

    props = A.explode(f("properties"))
    prop_name = pc.struct_field(props.items, "name")
    prop_value = A.text(pc.struct_field(props.items, "value"))
    keep = pc.and_(A.present(prop_name), A.present(prop_value)).to_numpy(zero_copy_only=False)
    mask = pa.array(keep)
    user_props = A.Part(props.parent[keep], prop_name.filter(mask), prop_value.filter(mask))
    flags = [A.part(rows, key, f(raw), mask=f(raw)) for raw, key in CONTACT_FLAGS.items()]

    columns = {
        "source": A.constant(n, SOURCE),
        "source_id": f("id"),
        "email": f("email"),
        "name": f("name"),
        "first_name": first,
        "last_name": last,
        "phone": f("phone"),
        "fax": f("fax"),
        "company": f("company"),
        "street": pc.struct_field(address, "streetAddress"),
        "zip_code": pc.struct_field(address, "zipCode"),
        "city": pc.struct_field(address, "city"),
        "province": f("province"),
        "country": pc.struct_field(address, "country"),
        "birthday": birthday,
        "state": f("state"),
        "score": f("score"),
        "opted_out": f("optedOut"),
        "owner": f("mainContactOwner"),
        "external_id": f("externalId"),
        "tags": tag_list,
        "created_at": A.epoch_ms(f("createdOn")),
        "modified_at": A.epoch_ms(f("modifiedOn")),
        "properties": A.build_map(n, [user_props, *birthday_parts, *flags]),
    }
    return A.table(CONTACTS, columns, n)


def _birthday(year: pa.Array, month: pa.Array, day: pa.Array) -> tuple[pa.Array, list[A.Part]]:
    """date32 birthday plus property entries that keep whatever could not become a date."""
    n = len(year)
    rows = np.arange(n, dtype=np.int64)
    y = pc.utf8_lpad(A.text(year), width=4, padding="0")
    m = pc.utf8_lpad(A.text(month), width=2, padding="0")
    d = pc.utf8_lpad(A.text(day), width=2, padding="0")
    birthday = A.parse_date(pc.binary_join_element_wise(y, m, d, "-"))
    month_day = pc.binary_join_element_wise(m, d, "-")
    partial = pc.and_(pc.is_null(year), month_day.is_valid())
    any_part = pc.or_(pc.or_(year.is_valid(), month.is_valid()), day.is_valid())
    raw = pc.binary_join_element_wise(
        A.text(year), m, d, "-", null_handling="replace", null_replacement=""
    )
    broken = pc.and_(pc.and_(any_part, pc.is_null(birthday)), pc.invert(partial))
    return birthday, [
        A.part(rows, "birthday_month_day", month_day, mask=partial),
        A.part(rows, "birthday_raw", raw, mask=broken),
    ]


def _synth_id(contact_id: pa.Array, kind: str, position: np.ndarray) -> pa.Array:
    """``{contact id}:{kind}:{index}`` for items that have no id of their own."""
    index = pa.array(position, pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(contact_id, A.constant(len(index), kind), index, ":")


_ColumnsOf = Callable[[pa.Array, np.ndarray], tuple[dict[str, pa.Array], list[A.Part]]]


def _activities(arr: pa.StructArray, page_of: np.ndarray | None = None) -> pa.Table:
    """Tasks, then notes, then visits (of each page, when ``page_of`` says which is which)."""
    contact_ids = pc.struct_field(arr, "id")
    parts, parents = [], []
    for kind, field, columns_of in (
        ("task", "contactTasks", _task_columns),
        ("note", "contactNotes", _note_columns),
        ("visit", "contactVisits", _visit_columns),
    ):
        exploded = A.explode(pc.struct_field(arr, field))
        parts.append(_activity_part(kind, exploded, contact_ids, columns_of))
        parents.append(exploded.parent)
    table = pa.concat_tables(parts)
    if page_of is not None and table.num_rows and page_of[-1] > 0:
        order = np.argsort(page_of[np.concatenate(parents)], kind="stable")
        table = table.take(pa.array(order, pa.int64()))
    return table


def _activity_part(
    kind: str, exploded: A.Exploded, contact_ids: pa.Array, columns_of: _ColumnsOf
) -> pa.Table:
    n = len(exploded.items)
    rows = np.arange(n, dtype=np.int64)
    contact_id = contact_ids.take(pa.array(exploded.parent, pa.int64()))
    columns, props = columns_of(exploded.items, rows)
    synth = _synth_id(contact_id, kind, exploded.position)
    own_id = columns.pop("own_id", None)
    columns.update(
        source=A.constant(n, SOURCE),
        source_id=synth if own_id is None else pc.coalesce(A.blank_to_null(own_id), synth),
        contact_id=contact_id,
        kind=A.constant(n, kind),
        properties=A.build_map(n, props),
    )
    return A.table(ACTIVITIES, columns, n)


def _task_columns(items: pa.Array, rows: np.ndarray) -> tuple[dict[str, pa.Array], list[A.Part]]:
    def f(name: str) -> pa.Array:
        return pc.struct_field(items, name)

    reminder = A.epoch_ms(f("reminder"))
    columns = {"own_id": f("id"), "details": f("note"), "start_time": A.epoch_ms(f("date"))}
    return columns, [A.part(rows, "cc", f("cc")), A.part(rows, "reminder", reminder)]


def _note_columns(items: pa.Array, rows: np.ndarray) -> tuple[dict[str, pa.Array], list[A.Part]]:
    def f(name: str) -> pa.Array:
        return pc.struct_field(items, name)

    columns = {"details": f("note"), "start_time": A.epoch_ms(f("date"))}
    return columns, [A.part(rows, "priv", f("priv"))]


def _visit_columns(items: pa.Array, rows: np.ndarray) -> tuple[dict[str, pa.Array], list[A.Part]]:
    def f(name: str) -> pa.Array:
        return pc.struct_field(items, name)

    end = pc.add(f("time"), pc.multiply(f("duration"), VISIT_DURATION_MS))
    columns = {
        "details": f("url"),
        "start_time": A.epoch_ms(f("time")),
        "end_time": A.epoch_ms(end),
    }
    return columns, [A.part(rows, key, f(key)) for key in VISIT_PROPERTIES]


def _sales(arr: pa.StructArray) -> pa.Table:
    events = A.explode(pc.struct_field(arr, "contactExtEvents"))
    kind = pc.utf8_upper(pc.struct_field(events.items, "contactExtEventType"))
    purchase = pc.fill_null(pc.equal(kind, "PURCHASE"), False)
    keep = purchase.to_numpy(zero_copy_only=False)
    items = events.items.filter(purchase)
    parent, position = events.parent[keep], events.position[keep]
    n = len(items)
    rows = np.arange(n, dtype=np.int64)

    def f(name: str) -> pa.Array:
        return pc.struct_field(items, name)

    contact_id = pc.struct_field(arr, "id").take(pa.array(parent, pa.int64()))
    date = A.epoch_ms(f("date"))
    props = [A.part(rows, key, f(key)) for key in ("location", *EVENT_DETAILS)]
    columns = {
        "source": A.constant(n, SOURCE),
        "source_id": pc.coalesce(
            A.blank_to_null(f("eventId")), _synth_id(contact_id, "event", position)
        ),
        "contact_id": contact_id,
        "status": A.constant(n, "won"),
        "amount": f("value"),
        "details": f("description"),
        "products": f("products"),
        "occurred_at": date,
        "created_at": date,
        "external_id": f("externalId"),
        "properties": A.build_map(n, props),
    }
    return A.table(SALES, columns, n)


def _coerce(value: Any, type_: pa.DataType) -> Any:
    """Best-effort conversion of one JSON value to ``type_``; impossible values become None."""
    if value is None:
        return None
    if pa.types.is_struct(type_):
        if not isinstance(value, Mapping):
            return None
        return {f.name: _coerce(value.get(f.name), f.type) for f in type_}
    if pa.types.is_list(type_):
        if not isinstance(value, list | tuple):
            return None
        return [_coerce(v, type_.value_type) for v in value]
    if pa.types.is_string(type_):
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value, ensure_ascii=False)
    if pa.types.is_boolean(type_):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        return None
    if pa.types.is_integer(type_):
        return _integer(value)
    return _number(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        number: int | None = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value.strip())
    else:
        real = _number(value)
        number = int(real) if real is not None and real.is_integer() else None
    return number if number is not None and -(2**63) <= number < 2**63 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
