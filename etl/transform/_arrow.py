"""Vectorised Arrow helpers shared by the CRM transforms (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.schemas import PROPERTIES, TAGS, TIMESTAMP

STRING = pa.string()
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # with ms units Arrow prints "%S" as "SS.mmm"


class Part(NamedTuple):
    """Entries for a map or list column: row index, key, value (all the same length)."""

    parent: np.ndarray
    keys: pa.Array
    values: pa.Array


def text(arr: pa.Array) -> pa.Array:
    """Any scalar array as strings: bool "true"/"false", timestamps ISO 8601 UTC."""
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_timestamp(arr.type):
        return pc.strftime(arr.cast(TIMESTAMP), format=ISO_FORMAT)
    return arr.cast(STRING)


def blank_to_null(arr: pa.Array) -> pa.Array:
    """Strings with "" turned into null."""
    arr = text(arr)
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, STRING), arr)


def present(arr: pa.Array) -> pa.Array:
    """Boolean mask: not null and, for strings, not ""."""
    valid = arr.is_valid()
    if pa.types.is_string(arr.type):
        return pc.and_(valid, pc.fill_null(pc.not_equal(arr, ""), False))
    return valid


def constant(n: int, value: str) -> pa.Array:
    """``n`` times ``value``, built from its buffers (a Python list of n strings costs 20x)."""
    data = value.encode()
    if n * len(data) >= 2**31:  # beyond 32-bit offsets
        return pa.array(np.full(n, value, dtype=object), STRING)
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def split_name(full: pa.Array) -> tuple[pa.Array, pa.Array]:
    """First whitespace token and the rest, each null when absent."""
    trimmed = blank_to_null(pc.utf8_trim_whitespace(full))
    parts = pc.utf8_split_whitespace(trimmed, max_splits=1)
    first = blank_to_null(pc.binary_join(pc.list_slice(parts, 0, 1), ""))
    rest = pc.utf8_trim_whitespace(pc.binary_join(pc.list_slice(parts, 1, 2), ""))
    return first, blank_to_null(rest)


def epoch_ms(arr: pa.Array) -> pa.Array:
    return arr.cast(pa.int64()).cast(TIMESTAMP)


def parse_iso(arr: pa.Array) -> pa.Array:
    """ISO 8601 strings to UTC timestamps; naive times count as UTC, garbage becomes null."""
    arr = blank_to_null(arr)
    try:
        return pc.cast(arr, TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parsed = pd.to_datetime(arr.to_pandas(), utc=True, errors="coerce", format="ISO8601").astype(
        "datetime64[ms, UTC]"
    )
    return pa.Array.from_pandas(parsed).cast(TIMESTAMP)


def parse_date(arr: pa.Array) -> pa.Array:
    """Strict "YYYY-MM-DD" (an ISO datetime is accepted too) to date32; invalid dates -> null."""
    arr = blank_to_null(arr)
    stamp = pc.strptime(arr, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls "2026-02-30" over to March; a round trip rejects such dates.
    same = pc.equal(pc.strftime(stamp, format="%Y-%m-%d"), arr)
    dates = pc.if_else(pc.fill_null(same, False), stamp, pa.scalar(None, stamp.type))
    dates = dates.cast(pa.date32())
    retry = pc.and_(pc.is_null(dates), arr.is_valid())
    if pc.any(retry).as_py():
        dates = pc.coalesce(dates, parse_iso(arr).cast(pa.date32()))
    return dates


def date_to_ts(dates: pa.Array) -> pa.Array:
    """date32 to midnight UTC."""
    return dates.cast(pa.timestamp("ms")).cast(TIMESTAMP)


def parse_float(arr: pa.Array) -> pa.Array:
    """Decimal strings to float64; garbage becomes null."""
    arr = blank_to_null(arr)
    try:
        return pc.cast(arr, pa.float64())
    except pa.ArrowInvalid:
        pass
    numbers = pd.to_numeric(arr.to_pandas(), errors="coerce").astype("float64")
    return pa.Array.from_pandas(numbers).cast(pa.float64())


def parse_bool(arr: pa.Array) -> pa.Array:
    """ "true"/"false" (any case, surrounding blanks ignored) to bool; anything else null."""
    low = pc.utf8_lower(pc.utf8_trim_whitespace(text(arr)))
    true = pc.equal(low, "true")
    false = pc.equal(low, "false")
    return pc.if_else(pc.or_(true, false), true, pa.scalar(None, pa.bool_()))


def failed(raw: pa.Array, parsed: pa.Array) -> pa.Array:
    """Mask of raw values that were given but did not parse."""
    return pc.and_(present(raw), pc.is_null(parsed))


def part(rows: np.ndarray, key: str, values: pa.Array, mask: pa.Array | None = None) -> Part:
    """Map entries ``key -> value`` for each row whose value is present (and ``mask`` holds)."""
    values = text(values)
    keep = present(values)
    if mask is not None:
        keep = pc.and_(keep, pc.fill_null(mask, False))
    idx = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
    return Part(rows[idx], constant(len(idx), key), values.take(pa.array(idx, pa.int64())))


def build_map(n: int, parts: Sequence[Part]) -> pa.MapArray:
    """One map per row from entries; within a row entries keep the order of ``parts``."""
    return _nest(n, parts, map_=True)


def build_list(n: int, parent: np.ndarray, values: pa.Array) -> pa.ListArray:
    """One list per row (empty when a row has no values)."""
    return _nest(n, [Part(parent, values, values)], map_=False)


def _nest(n: int, parts: Sequence[Part], *, map_: bool) -> pa.Array:
    parts = [p for p in parts if len(p.parent)]
    if parts:
        parent = np.concatenate([p.parent for p in parts]).astype(np.int64)
        order = pa.array(np.argsort(parent, kind="stable"))
        keys = pa.concat_arrays([text(p.keys) for p in parts]).take(order)
        values = pa.concat_arrays([text(p.values) for p in parts]).take(order)
        counts = np.bincount(parent, minlength=n)
    else:
        keys = values = pa.array([], STRING)
        counts = np.zeros(n, dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    if map_:
        out = pa.MapArray.from_arrays(offsets, keys, values)
        return out.cast(PROPERTIES)
    return pa.ListArray.from_arrays(offsets, values).cast(TAGS)


class Exploded(NamedTuple):
    """The items of a list column, one per non-null item, with their row and position."""

    parent: np.ndarray
    position: np.ndarray
    items: pa.Array


def explode(lists: pa.Array) -> Exploded:
    """Flatten a list array; ``position`` is the item's index inside its source list.

    Works from the offsets, so null lists backed by a non-empty range and sliced arrays are
    handled; null lists and null items yield nothing.
    """
    offsets = lists.offsets.to_numpy().astype(np.int64)
    start = int(offsets[0]) if len(offsets) else 0
    stop = int(offsets[-1]) if len(offsets) else 0
    values = lists.values.slice(start, stop - start)
    parent = np.repeat(np.arange(len(lists), dtype=np.int64), np.diff(offsets))
    position = np.arange(len(values), dtype=np.int64) - (offsets[parent] - start)
    list_valid = lists.is_valid().to_numpy(zero_copy_only=False)
    keep = list_valid[parent] & values.is_valid().to_numpy(zero_copy_only=False)
    idx = pa.array(np.flatnonzero(keep), pa.int64())
    return Exploded(parent[keep], position[keep], values.take(idx))


def table(schema: pa.Schema, columns: dict[str, pa.Array], n: int) -> pa.Table:
    """Build a table of ``schema``: missing columns are nulls, "" in string columns is null,
    non-nullable columns are checked."""
    arrays = []
    for field in schema:
        arr = columns.get(field.name)
        arr = pa.nulls(n, field.type) if arr is None else arr.cast(field.type)
        if pa.types.is_string(field.type):
            arr = blank_to_null(arr)
        if not field.nullable and arr.null_count:
            raise ValueError(f"column {field.name!r} must not hold nulls")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)
