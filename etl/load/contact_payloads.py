"""Bulk-write entries as JSON text, built column-wise with pyarrow.compute.

Building one dict per row (the writers' ``entry`` methods in :mod:`etl.load.crm_contacts`) cost
more client CPU than anything else in an import's load pass. :func:`salesmanago_entries` (a
``contact/batchupsert`` ``upsertDetails`` entry) and :func:`salesnexus_entries` (an
``import-contacts`` entry) give the same entries (the same JSON once parsed) for a whole Arrow
load frame at once: string columns are JSON-escaped and joined into ``,"key":"value"`` fragments
by vectorised kernels, and an absent value (null or empty) leaves its key out, as ``entry``
does. The rare rows the kernels do not cover exactly (a control character, which JSON writes as
``\\u00XX``; a null tag; a property name given twice) are encoded from ``entry`` itself, so the
result never depends on those corners.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

EntryBuilder = Callable[[Mapping[str, Any]], dict[str, Any]]

# Canonical column -> SALESmanago key, in the order ``entry`` writes them (both builders use these).
CONTACT_KEYS = {
    "email": "email",
    "name": "name",
    "phone": "phone",
    "fax": "fax",
    "company": "company",
    "state": "state",
    "external_id": "externalId",
}
ADDRESS_KEYS = {
    "street": "streetAddress",
    "zip_code": "zipCode",
    "city": "city",
    "country": "country",
}
ENTRY_KEYS = {"province": "province", "birthday": "birthday"}
TEXT_COLUMNS = (*CONTACT_KEYS, "first_name", "last_name", *ADDRESS_KEYS, *ENTRY_KEYS)
_NULL = pa.scalar(None, pa.string())
_STRINGS = (pa.string(), pa.large_string())


def salesmanago_entries(table: pa.Table, entry: EntryBuilder) -> pa.Array:
    """One ``upsertDetails`` entry per row of ``table`` (a contact load frame), as JSON text.

    ``entry`` is the per-row builder: it encodes the rows the kernels leave out, and every row
    when a column does not have the type the load frame schema gives it."""
    if not _supported(table.schema):
        return _by_row(table, entry)
    odd = np.zeros(table.num_rows, dtype=bool)  # rows left to ``entry``
    text_of = _texts(table)
    address = _members([_member(key, text_of[c]) for c, key in ADDRESS_KEYS.items()])
    contact = _members(
        [
            *(_member(key, text_of[c]) for c, key in CONTACT_KEYS.items()),
            _wrapped(',"address":{', address, "}"),
        ]
    )
    fragments: list[pa.Array | str] = [
        '{"contact":{',
        contact,
        "}",
        *(_member(key, text_of[c]) for c, key in ENTRY_KEYS.items()),
        _tags(table, odd),
        _properties(table, odd),
        "}",
    ]
    return _finish(table, fragments, odd, entry)


def salesnexus_entries(
    table: pa.Table,
    entry: EntryBuilder,
    *,
    email_id: Any,
    field_ids: Mapping[str, Any],
    custom_ids: Mapping[str, Any],
) -> pa.Array:
    """One ``import-contacts`` entry per row of ``table``, as JSON text: ``_toMatch`` on
    ``email_id``, then each column's value under its field id (``field_ids``, in order), then
    each property under the id of the custom field of its name (``custom_ids``, casefolded)."""
    if not _supported(table.schema):
        return _by_row(table, entry)
    odd = np.zeros(table.num_rows, dtype=bool)
    text_of = _texts(table)
    fragments: list[pa.Array | str] = ['{"_toMatch":' + orjson.dumps([email_id]).decode()]
    for column, field_id in field_ids.items():
        key = _escape_text(str(field_id))
        if column == "tags":
            fragments.append(_tags(table, odd, f',"{key}":"', ", ", '"', quote=False))
        elif column == "birthday" and column in table.column_names:  # yyyyMMdd: yyyy-MM-dd
            text = _without_empty(table.column(column).combine_chunks().cast(pa.string()))
            parts = [pc.utf8_slice_codeunits(text, a, b) for a, b in ((0, 4), (4, 6), (6, 8))]
            fragments.append(_member(key, _escape(pc.binary_join_element_wise(*parts, "-"))))
        else:
            fragments.append(_member(key, text_of[column]))
    fragments += [_salesnexus_properties(table, odd, custom_ids), "}"]
    return _finish(table, fragments, odd, entry)


def _texts(table: pa.Table) -> dict[str, pa.Array]:
    """Every text column JSON-escaped, null where absent (null or empty); ``name`` is the full
    name as ``entry`` gives it: first and last, else the name, else either part."""
    n = table.num_rows

    def text(column: str) -> pa.Array:
        if column not in table.column_names:
            return pa.nulls(n, pa.string())
        values = table.column(column).combine_chunks().cast(pa.string())
        return _escape(_without_empty(values))

    text_of = {column: text(column) for column in TEXT_COLUMNS}
    first, last = text_of["first_name"], text_of["last_name"]
    both = pc.binary_join_element_wise(first, last, " ")
    text_of["name"] = pc.coalesce(both, text_of["name"], first, last)
    return text_of


def _finish(
    table: pa.Table, fragments: Sequence[pa.Array | str], odd: np.ndarray, entry: EntryBuilder
) -> pa.Array:
    """The fragments joined row by row; rows holding a control character, or marked ``odd``,
    encoded by ``entry`` instead."""
    n = table.num_rows
    result = _concat(fragments)
    if isinstance(result, pa.Scalar):  # no column had a value in any row
        result = pa.array([result.as_py()] * n, pa.string())
    data, offsets = _bytes(result)
    controls = np.flatnonzero(data < 0x20)  # never part of a multi-byte UTF-8 sequence
    if len(controls):
        odd[np.searchsorted(offsets, controls, side="right") - 1] = True
    if odd.any():
        mask = pa.array(odd)
        result = pc.replace_with_mask(result, mask, _by_row(table.filter(mask), entry))
    return result


def _supported(schema: pa.Schema) -> bool:
    names = set(schema.names)
    if any(schema.field(c).type not in _STRINGS for c in TEXT_COLUMNS if c in names):
        return False
    if "tags" in names:
        tags = schema.field("tags").type
        if not (pa.types.is_list(tags) and tags.value_type in _STRINGS):
            return False
    if "properties" in names:
        props = schema.field("properties").type
        if not (
            pa.types.is_map(props) and props.key_type in _STRINGS and props.item_type in _STRINGS
        ):
            return False
    return True


def _by_row(table: pa.Table, entry: EntryBuilder) -> pa.Array:
    return pa.array(
        [orjson.dumps(entry(record)).decode() for record in table.to_pylist()], pa.string()
    )


def _flag(odd: np.ndarray, matches: pa.Array, parents: np.ndarray | None = None) -> None:
    """Mark the rows (or the ``parents`` rows of list elements) where ``matches`` is true."""
    hits = pc.fill_null(matches, False).to_numpy(zero_copy_only=False)
    if hits.any():
        odd[hits.nonzero()[0] if parents is None else parents[hits]] = True


def _bytes(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's UTF-8 bytes and its offsets into them, as numpy views (no copy)."""
    _, offset_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offset_buffer, np.int32)[
        values.offset : values.offset + len(values) + 1
    ]
    if data_buffer is None:
        return np.empty(0, np.uint8), offsets - offsets[0]
    return np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]], offsets - offsets[0]


def _without_empty(values: pa.Array) -> pa.Array:
    """Empty strings made null (both are absent values)."""
    _, offsets = _bytes(values)
    empty = np.diff(offsets) == 0
    if empty.any() and pc.any(pc.equal(values, "")).as_py():
        return pc.if_else(pc.equal(values, ""), _NULL, values)
    return values


def _escape_text(text: str) -> str:
    """One string JSON-escaped, without its quotes."""
    return orjson.dumps(text).decode()[1:-1]


def _escape(values: pa.Array) -> pa.Array:
    """Backslashes and quotes escaped (control characters are left to ``entry``); the
    kernels run only when one of them occurs at all."""
    data, _ = _bytes(values)
    if (data == ord("\\")).any():
        values = pc.replace_substring(values, "\\", "\\\\")
    if (data == ord('"')).any():
        values = pc.replace_substring(values, '"', '\\"')
    return values


def _member(key: str, escaped: pa.Array) -> pa.Array | str:
    """``,"key":"value"``, null where the value is absent (``""`` when it is in every row)."""
    if escaped.null_count == len(escaped):
        return ""
    return pc.binary_join_element_wise(f',"{key}":"', escaped, '"', "")


def _concat(parts: Sequence[pa.Array | str]) -> pa.Array:
    """The parts joined row by row, a null part counting as empty."""
    return pc.binary_join_element_wise(*parts, "", null_handling="replace")


def _members(members: Sequence[pa.Array | str]) -> pa.Array:
    """The members of an object, comma-separated (the first one's leading comma dropped)."""
    return pc.utf8_slice_codeunits(_concat(members), 1)


def _wrapped(head: str, body: pa.Array, tail: str) -> pa.Array:
    """``head + body + tail``, or empty where ``body`` is null or empty."""
    body = pc.if_else(pc.equal(body, ""), _NULL, body)
    return pc.fill_null(pc.binary_join_element_wise(head, body, tail, ""), "")


def _elements(lists: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """A list or map array's values (keys for a map), each element's row, and the offsets
    rebased to the values (slices keep their parent's offsets and values)."""
    offsets = lists.offsets.to_numpy()
    start, end = int(offsets[0]), int(offsets[-1])
    values = (lists.keys if isinstance(lists, pa.MapArray) else lists.values).slice(
        start, end - start
    )
    rebased = offsets - start
    parents = np.repeat(np.arange(len(lists)), np.diff(rebased))
    return values, parents, rebased


def _joined(lists: pa.Array, strings: pa.Array, rebased: np.ndarray) -> pa.Array:
    """Each row's ``strings`` (one per element of ``lists``) concatenated, null for null lists."""
    grouped = pa.ListArray.from_arrays(pa.array(rebased, pa.int32()), strings, mask=lists.is_null())
    return pc.binary_join(grouped, "")


def _flag_repeated_keys(odd: np.ndarray, keys: pa.Array, rebased: np.ndarray) -> None:
    """Mark the rows whose map holds a key twice (only rows of two or more keys are looked at)."""
    counts = np.diff(rebased)
    several = np.flatnonzero(counts > 1)
    if not len(several):
        return
    names = keys.to_pylist()
    for row in several:
        row_keys = names[rebased[row] : rebased[row + 1]]
        if len(set(row_keys)) < len(row_keys):
            odd[row] = True


def _tags(
    table: pa.Table,
    odd: np.ndarray,
    head: str = ',"tags":[',
    separator: str = ",",
    tail: str = "]",
    *,
    quote: bool = True,
) -> pa.Array | str:
    """``head``, the row's tags (each quoted, or not) joined by ``separator``, ``tail``; empty
    for rows with no tags (null or an empty list)."""
    if "tags" not in table.column_names:
        return ""
    tags = table.column("tags").combine_chunks()
    values, parents, rebased = _elements(tags)
    values = values.cast(pa.string())
    _flag(odd, values.is_null(), parents)
    pieces = _escape(values)
    if quote:
        pieces = pc.binary_join_element_wise('"', pieces, '"', "")
    pieces = pc.binary_join_element_wise(separator, pc.fill_null(pieces, ""), "")
    listed = pc.utf8_slice_codeunits(_joined(tags, pieces, rebased), len(separator))
    non_empty = pa.array(np.diff(rebased) > 0)
    listed = pc.if_else(non_empty, listed, _NULL)
    return pc.fill_null(pc.binary_join_element_wise(head, listed, tail, ""), "")


def _properties(table: pa.Table, odd: np.ndarray) -> pa.Array | str:
    """``,"properties":{"k":"v"}`` for rows with a non-empty map (``{}`` when every value is
    absent, as ``entry`` writes it), else empty."""
    if "properties" not in table.column_names:
        return ""
    props = table.column("properties").combine_chunks()
    keys, _, rebased = _elements(props)
    start = int(props.offsets[0].as_py())
    items = props.items.slice(start, len(keys)).cast(pa.string())
    keys = keys.cast(pa.string())
    _flag_repeated_keys(odd, keys, rebased)
    items = _without_empty(items)
    member = pc.binary_join_element_wise(',"', _escape(keys), '":"', _escape(items), '"', "")
    body = pc.utf8_slice_codeunits(_joined(props, pc.fill_null(member, ""), rebased), 1)
    non_empty = pa.array(np.diff(rebased) > 0)
    return pc.fill_null(
        pc.binary_join_element_wise(',"properties":{', pc.if_else(non_empty, body, _NULL), "}", ""),
        "",
    )


def _salesnexus_properties(
    table: pa.Table, odd: np.ndarray, custom_ids: Mapping[str, Any]
) -> pa.Array | str:
    """``,"<field id>":"value"`` for each property whose name is a custom field and whose value
    is present (a later one overrides an earlier one with the same id, in JSON as in a dict)."""
    if "properties" not in table.column_names:
        return ""
    props = table.column("properties").combine_chunks()
    keys, _, rebased = _elements(props)
    start = int(props.offsets[0].as_py())
    items = _without_empty(props.items.slice(start, len(keys)).cast(pa.string()))
    keys = keys.cast(pa.string())
    _flag_repeated_keys(odd, keys, rebased)
    names = pc.unique(keys)
    ids = [custom_ids.get(name.casefold()) for name in names.to_pylist()]
    known = pa.array([None if i is None else _escape_text(str(i)) for i in ids], pa.string())
    field_ids = pc.take(known, pc.index_in(keys, value_set=names))
    member = pc.binary_join_element_wise(',"', field_ids, '":"', _escape(items), '"', "")
    return _joined(props, pc.fill_null(member, ""), rebased)
