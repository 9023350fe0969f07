"""Cell rules for spreadsheet contacts, vectorised over Arrow string arrays (pure functions).

Every rule takes and returns whole columns; no Python runs per row. The regular expressions are
RE2 (``pyarrow.compute``), written to accept what Python's ``re`` did in the pandas version:
``\\s`` is spelled out as Python's Unicode whitespace (:data:`SPACE`). One deliberate change:
digits are ASCII only; Python's ``\\d`` also took e.g. full-width digits and passed them into
the ``yyyyMMdd`` birthday, such a birthday is now an invalid one.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.phones import to_e164

STRING = pa.string()
TAGS_TYPE = pa.list_(STRING)

# The characters Python's str.isspace() and re's \s accept (RE2's \s is ASCII only).
SPACE_CHARS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
SPACE = "".join(f"\\x{{{ord(c):x}}}" for c in SPACE_CHARS)  # for inside [...]

# One @, no spaces or address-list punctuation, a domain of non-empty dot-separated labels.
_NOT_IN_EMAIL = rf"@{SPACE}<>(),;:\"\[\]"
EMAIL_PATTERN = rf"[^{_NOT_IN_EMAIL}]+@(?:[^{_NOT_IN_EMAIL}\.]+\.)+[^{_NOT_IN_EMAIL}\.]+"

_MONTH_NAMES = (
    ("january", "jan", "januar", "jänner"),
    ("february", "feb", "februar"),
    ("march", "mar", "märz", "maerz", "mär", "mrz"),
    ("april", "apr"),
    ("may", "mai"),
    ("june", "jun", "juni"),
    ("july", "jul", "juli"),
    ("august", "aug"),
    ("september", "sep", "sept"),
    ("october", "oct", "oktober", "okt"),
    ("november", "nov"),
    ("december", "dec", "dezember", "dez"),
)
_MONTH_KEYS = pa.array([name for names in _MONTH_NAMES for name in names], STRING)
_MONTH_NUMBERS = pa.array(
    [str(n) for n, names in enumerate(_MONTH_NAMES, start=1) for _ in names], STRING
)
_S = f"[{SPACE}]"
# The whitespace runs that collapsing to one " " changes (a lone " " stays: half the work).
_NEEDS_COLLAPSE = " " + _S + "+|[" + SPACE.replace("\\x{20}", "") + "]" + _S + "*"
_TIME = (
    r"(?:[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
# A month name. (Any other word gives an invalid date, as no later format can match it.)
_WORD = "(?:" + "|".join(sorted(_MONTH_KEYS.to_pylist(), key=len, reverse=True)) + ")"
_D12 = "[0-9]{1,2}"
# No value matches two, so the order only sets the cost: each is tried on the values not matched
# yet, and the common numeric shapes are mostly read without them (:data:`_FIXED_SHAPES`), so
# month names come first. "a"/"b" are day/month or month/day by ``dayfirst``; "M" a month name.
_BIRTHDAY_FORMATS = (
    rf"(?P<d>{_D12})\.?{_S}+(?P<M>{_WORD})\.?,?{_S}+(?P<y>[0-9]{{4}})",
    rf"(?P<M>{_WORD})\.?{_S}+(?P<d>{_D12})(?:st|nd|rd|th)?,?{_S}+(?P<y>[0-9]{{4}})",
    rf"(?P<y>[0-9]{{4}})-(?P<m>{_D12})-(?P<d>{_D12}){_TIME}",
    r"(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})",
    rf"(?P<y>[0-9]{{4}})/(?P<m>{_D12})/(?P<d>{_D12})",
    rf"(?P<d>{_D12})\.{_S}?(?P<m>{_D12})\.{_S}?(?P<y>[0-9]{{4}})",
    rf"(?P<a>{_D12})/(?P<b>{_D12})/(?P<y>[0-9]{{4}})",
    rf"(?P<a>{_D12})-(?P<b>{_D12})-(?P<y>[0-9]{{4}})",
)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class Names(NamedTuple):
    name: pa.Array
    first_name: pa.Array
    last_name: pa.Array


class Tags(NamedTuple):
    """``tags``: list<string> (null where none); ``over``: positions with a tag over the
    limit; ``longest``: that tag's length for each of them."""

    tags: pa.Array
    over: np.ndarray
    longest: np.ndarray


def flags(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as numpy, null as False."""
    return np.asarray(pc.fill_null(mask, False), dtype=bool)


def clean(values: pa.Array, *, collapse: bool = False) -> pa.Array:
    """Trimmed text, inner whitespace collapsed on request, "" -> null."""
    text = pc.utf8_trim_whitespace(values)
    if collapse:
        text = pc.replace_substring_regex(text, _NEEDS_COLLAPSE, " ")
    return blank_to_null(text)


def blank_to_null(text: pa.Array) -> pa.Array:
    """Empty strings as null, reusing the strings' buffers (only a new validity bitmap)."""
    present = pc.fill_null(pc.not_equal(text, ""), False)
    if text.offset or present.offset:
        return pc.if_else(present, text, pa.scalar(None, STRING))
    _, offsets, data = text.buffers()
    return pa.Array.from_buffers(STRING, len(text), [present.buffers()[1], offsets, data])


def lengths(values: pa.Array) -> np.ndarray:
    """Characters per value, 0 where null."""
    return np.asarray(pc.fill_null(pc.utf8_length(values), 0), dtype=np.int64)


def normalize_email(values: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """(trimmed input, lower-case address or null, valid flags)."""
    raw = clean(values)
    lower = pc.utf8_lower(raw)
    valid = flags(pc.match_substring_regex(lower, f"^(?:{EMAIL_PATTERN})$"))
    return raw, pc.if_else(pa.array(valid), lower, pa.scalar(None, STRING)), valid


def phones(raw: pa.Array, region: str) -> pa.Array:
    """E.164 numbers, null where ``raw`` is null or not a valid number for ``region``."""
    return to_e164(raw, region)


def parse_birthdays(raw: pa.Array, *, dayfirst: bool = True) -> pa.Array:
    """``YYYYMMDD`` text, null where ``raw`` is null or not a real past date from 1900 on."""
    n = len(raw)
    ymd = np.zeros((3, n), dtype=np.int64)  # year, month, day; 0 where not read
    todo = _fixed_width_dates(raw, ymd, dayfirst)
    rest = raw.take(pa.array(todo))  # the values no fixed-width shape matched, in order
    for pattern in _BIRTHDAY_FORMATS:
        if not len(todo):
            break
        whole = f"(?i)^(?:{pattern})$"
        hit = flags(pc.match_substring_regex(rest, whole))  # cheaper than extract_regex
        if not hit.any():
            continue
        parts = _date_parts(rest.filter(pa.array(hit)), whole, dayfirst)
        for i, part in enumerate(parts):
            ymd[i, todo[hit]] = np.asarray(pc.fill_null(pc.cast(part, pa.int64()), 0))
        todo, rest = todo[~hit], rest.filter(pa.array(~hit))
    year, month, day = ymd
    ok = _real_past_dates(year, month, day)
    return pc.cast(pa.array(year * 10_000 + month * 100 + day, mask=~ok), STRING)


# Fixed-width shapes read straight from the bytes (most birthdays): byte length, {position:
# allowed bytes} of the non-digits (every other byte is an ASCII digit), (start, digits) of the
# year, first and second number, and whether those two are "a"/"b" (day/month by ``dayfirst``)
# rather than month/day. Each is exactly what one of :data:`_BIRTHDAY_FORMATS` matches at that
# length, so the result is the same; other values go through the patterns.
_Shape = tuple[int, dict[int, bytes], tuple[tuple[int, int], ...], bool]
_FIXED_SHAPES: tuple[_Shape, ...] = (
    (10, {4: b"-", 7: b"-"}, ((0, 4), (5, 2), (8, 2)), False),  # 1990-03-04
    (19, {4: b"-", 7: b"-", 10: b" Tt", 13: b":", 16: b":"}, ((0, 4), (5, 2), (8, 2)), False),
    (8, {}, ((0, 4), (4, 2), (6, 2)), False),  # 19900304
    (10, {4: b"/", 7: b"/"}, ((0, 4), (5, 2), (8, 2)), False),  # 1990/03/04
    (10, {2: b".", 5: b"."}, ((6, 4), (3, 2), (0, 2)), False),  # 04.03.1990
    (9, {2: b".", 4: b"."}, ((5, 4), (3, 1), (0, 2)), False),  # 04.3.1990
    (9, {1: b".", 4: b"."}, ((5, 4), (2, 2), (0, 1)), False),  # 4.03.1990
    (8, {1: b".", 3: b"."}, ((4, 4), (2, 1), (0, 1)), False),  # 4.3.1990
    (10, {2: b"/", 5: b"/"}, ((6, 4), (0, 2), (3, 2)), True),  # 04/03/1990
    (10, {2: b"-", 5: b"-"}, ((6, 4), (0, 2), (3, 2)), True),  # 04-03-1990
)


def _fixed_width_dates(raw: pa.Array, ymd: np.ndarray, dayfirst: bool) -> np.ndarray:
    """Fill ``ymd`` for the values of a fixed-width shape; the positions of the other non-null
    values, ascending."""
    present = np.asarray(raw.is_valid(), dtype=bool)
    _, offsets_buffer, data_buffer = raw.buffers()
    if data_buffer is None:
        return np.flatnonzero(present)
    offsets = np.frombuffer(
        offsets_buffer, dtype=np.int32, count=len(raw) + 1, offset=raw.offset * 4
    )
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    sizes = np.diff(offsets)
    done = np.zeros(len(raw), dtype=bool)
    for width in sorted({shape[0] for shape in _FIXED_SHAPES}):
        rows = np.flatnonzero(present & (sizes == width))
        if not len(rows):
            continue
        cells = data[offsets[rows, None] + np.arange(width)]
        digits = cells.astype(np.int16) - 48
        is_digit = (digits >= 0) & (digits <= 9)
        for size, others, fields, ambiguous in _FIXED_SHAPES:
            if size != width:
                continue
            hit = ~done[rows]
            hit &= is_digit[:, [i for i in range(width) if i not in others]].all(axis=1)
            for at, allowed in others.items():
                hit &= np.logical_or.reduce([cells[:, at] == byte for byte in allowed])
            if not hit.any():
                continue
            year, first, second = (_number(digits[hit], *field) for field in fields)
            month, day = (second, first) if ambiguous and dayfirst else (first, second)
            where = rows[hit]
            ymd[0, where], ymd[1, where], ymd[2, where] = year, month, day
            done[where] = True
    return np.flatnonzero(present & ~done)


def _number(digits: np.ndarray, start: int, length: int) -> np.ndarray:
    value = digits[:, start].astype(np.int64)
    for i in range(start + 1, start + length):
        value = value * 10 + digits[:, i]
    return value


def _date_parts(values: pa.Array, pattern: str, dayfirst: bool) -> tuple[pa.Array, ...]:
    """Year, month and day digits of values that match ``pattern``."""
    parts = pc.extract_regex(values, pattern)
    fields = {name: pc.struct_field(parts, name) for name in _group_names(parts)}
    if "a" in fields:
        first, second = ("d", "m") if dayfirst else ("m", "d")
        fields[first], fields[second] = fields.pop("a"), fields.pop("b")
    if "M" in fields:
        month = pc.index_in(pc.utf8_lower(fields.pop("M")), value_set=_MONTH_KEYS)
        fields["m"] = _MONTH_NUMBERS.take(month)
    return fields["y"], fields["m"], fields["d"]


def _group_names(parts: pa.Array) -> list[str]:
    return [parts.type.field(i).name for i in range(parts.type.num_fields)]


def _real_past_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Whether each (year, month, day) is a date from 1900 to today."""
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    last_day = _DAYS_IN_MONTH[np.clip(m, 0, 12)] + ((m == 2) & leap)
    today = dt.date.today()
    serial = y * 10_000 + m * 100 + d
    limit = today.year * 10_000 + today.month * 100 + today.day
    return (m >= 1) & (m <= 12) & (d >= 1) & (d <= last_day) & (y >= 1900) & (serial <= limit)


def split_tags(raw: pa.Array, limit: int) -> Tags:
    """Tags split on ``;``, ``,`` or ``|``, trimmed, empty ones dropped, first occurrence of
    each kept (in order); rows without a tag get null.

    Tag cells repeat a lot, so each distinct cell is split once and the result taken per row."""
    encoded = raw.dictionary_encode()
    if not len(encoded.dictionary) or 2 * len(encoded.dictionary) > len(raw):
        return _split_tags(raw, limit)
    distinct = _split_tags(encoded.dictionary, limit)
    longest = np.zeros(len(encoded.dictionary), dtype=np.int64)
    longest[distinct.over] = distinct.longest
    per_row = longest[np.asarray(pc.fill_null(encoded.indices, 0), dtype=np.int64)]
    per_row[np.asarray(encoded.indices.is_null(), dtype=bool)] = 0
    over = np.flatnonzero(per_row)
    return Tags(distinct.tags.take(encoded.indices), over, per_row[over])


def _split_tags(raw: pa.Array, limit: int) -> Tags:
    n = len(raw)
    # Literal replaces and split: a third cheaper than pc.split_pattern_regex(raw, "[;,|]").
    parts = pc.split_pattern(
        pc.replace_substring(pc.replace_substring(raw, ";", "|"), ",", "|"), "|"
    )
    values = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    parent = np.asarray(pc.list_parent_indices(parts), dtype=np.int64)
    keep = np.asarray(pc.not_equal(values, ""), dtype=bool)
    codes = np.asarray(values.dictionary_encode().indices, dtype=np.int64)
    key = parent * (int(codes.max(initial=0)) + 1) + codes
    first = np.zeros(len(key), dtype=bool)
    first[np.unique(key, return_index=True)[1]] = True
    keep &= first
    values, parent = values.filter(pa.array(keep)), parent[keep]
    counts = np.bincount(parent, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    tags = pa.ListArray.from_arrays(
        pa.array(offsets), values, type=TAGS_TYPE, mask=pa.array(counts == 0)
    )
    sizes = lengths(values)
    long = sizes > limit
    longest = np.zeros(n, dtype=np.int64)
    np.maximum.at(longest, parent[long], sizes[long])
    over = np.flatnonzero(longest)
    return Tags(tags, over, longest[over])


def names(name: pa.Array, first: pa.Array, last: pa.Array) -> Names:
    """Full name split into first / last (first token / rest, or "Last, First") where both
    are empty; first and last joined into the full name where it is empty. The inputs are
    cleaned (trimmed, whitespace collapsed, "" as null)."""
    split = pc.and_(name.is_valid(), pc.and_(first.is_null(), last.is_null()))
    if flags(split).any():
        before, after = _split_once(name, ",")
        one_comma = pc.equal(pc.count_substring(name, ","), 1)
        before, after = pc.utf8_trim_whitespace(before), pc.utf8_trim_whitespace(after)
        reverse = pc.and_(pc.not_equal(before, ""), pc.not_equal(after, ""))
        reverse = pc.fill_null(pc.and_(one_comma, reverse), False)
        token, rest = _split_once(name, " ")
        first = pc.if_else(split, pc.if_else(reverse, after, token), first)
        last = pc.if_else(split, pc.if_else(reverse, before, rest), last)
        last = pc.if_else(pc.equal(last, ""), pa.scalar(None, STRING), last)
    join = pc.and_(name.is_null(), pc.or_(first.is_valid(), last.is_valid()))
    if flags(join).any():
        joined = pc.binary_join_element_wise(pc.fill_null(first, ""), pc.fill_null(last, ""), " ")
        name = pc.if_else(join, pc.utf8_trim_whitespace(joined), name)
    return Names(name, first, last)


def _split_once(values: pa.Array, separator: str) -> tuple[pa.Array, pa.Array]:
    """The text before the first ``separator`` (all of it where there is none) and the text
    after it (null where there is none); literal splits, a fraction of a regex's cost."""
    parts = pc.split_pattern(values, separator, max_splits=1)
    offsets = np.asarray(parts.offsets, dtype=np.int64)
    two = np.diff(offsets) == 2
    after = parts.values.take(pa.array(offsets[:-1] + 1, mask=~two))
    return pc.list_element(parts, 0), after


def property_map(keys: list[str], columns: list[pa.Array]) -> pa.MapArray:
    """One map per row of ``keys[j]`` -> ``columns[j]``'s value, nulls left out (an empty
    map where a row has none); at least one key."""
    n, k = len(columns[0]), len(keys)
    # Row-major order: row 0's properties, then row 1's, ...
    order = (np.arange(k, dtype=np.int64)[None, :] * n + np.arange(n)[:, None]).ravel()
    items = pa.concat_arrays([c.cast(STRING) for c in columns]).take(pa.array(order))
    present = np.asarray(items.is_valid(), dtype=bool)
    counts = present.reshape(n, k).sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    key_index = np.tile(np.arange(k, dtype=np.int64), n)[present]
    names = pa.array(keys, STRING).take(pa.array(key_index))
    values = items.filter(pa.array(present))
    return pa.MapArray.from_arrays(pa.array(offsets), names, values, pa.map_(STRING, STRING))
