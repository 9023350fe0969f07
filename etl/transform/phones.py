"""Phone numbers to E.164, vectorised and exact to ``phonenumbers``.

Per value, ``phonenumbers.parse`` + ``is_valid_number`` + ``format_number`` costs ~45 µs and in
a large file nearly every number is distinct. :func:`to_e164` decides the common shapes
(``+<country code>``, the default region's plain international prefix such as ``00``, or a
national number; ASCII digits with only spaces, ``-``, ``.``, ``/`` and parentheses between
them) with Arrow (RE2) regexes taken from phonenumbers' own metadata, reproducing its steps:
country code, national prefix stripping, the region of a shared country code, and validation
(general pattern and lengths, then the number types). Anything else (letters, extensions,
non-ASCII digits, national prefixes that are regexes or carry a transform rule, a national
number starting with the region's own country code, an unknown code after ``+``, ...) goes
through phonenumbers once per distinct value. phonenumbers stays the authority: the fast path
only answers where it provably agrees, and tests/test_phones.py checks that it does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumberDesc

STRING = pa.string()
_SEP = r" ./\-()"
# A leading "+" (after optional punctuation) and ASCII digits with separators only: nothing
# phonenumbers would read as an extension, letters, a second number or RFC 3966.
_SHAPE = rf"^[{_SEP}]*\+?[{_SEP}]*[0-9][0-9{_SEP}]*$"
_MAX_INPUT = 250  # phonenumbers' _MAX_INPUT_STRING_LENGTH
_MIN_NSN, _MAX_NSN = 2, 17
_PLAIN = re.compile(r"[0-9]+")
_PLAIN_ALTERNATIVES = re.compile(r"[0-9]+(?:\|[0-9]+)*")
# The descs of _number_type_helper that make a number valid on their own (mobile is special).
_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


def to_e164(values: pa.Array | pa.ChunkedArray, region: str) -> pa.Array:
    """E.164 text (``;ext=N`` appended when there is an extension) of each trimmed string, null
    where it is null or not a valid number; exactly what :func:`e164` gives per value."""
    arr = _strings(values)
    decided, idx, vals = _fast_path(arr, region)
    todo = np.flatnonzero(~decided)
    if len(todo):
        raw = arr.take(pa.array(todo)).to_pylist()
        # Sorted: one country's numbers together keep Python's regex cache (512) warm.
        table = {value: e164(value, region) for value in sorted(set(raw))}
        idx.append(todo)
        vals.append(pa.array([table[value] for value in raw], STRING))
    return _scatter(pa.nulls(len(arr), STRING), idx, vals)


def fast_path_mask(values: pa.Array | pa.ChunkedArray, region: str) -> pa.BooleanArray:
    """True where :func:`to_e164` decides the value without calling phonenumbers."""
    return pa.array(_fast_path(_strings(values), region)[0])


@lru_cache(maxsize=1 << 16)
def e164(value: str, region: str) -> str | None:
    """The reference, one value at a time."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{text};ext={number.extension}" if number.extension else text


# --------------------------------------------------------------------------- arrays


def _strings(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if values.type == STRING else values.cast(STRING)


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _lengths(arr: pa.Array) -> np.ndarray:
    """Byte lengths: the same as character lengths for the ASCII the fast path takes."""
    return _np(pc.binary_length(arr)).astype(np.int64)


def _matches(arr: pa.Array, pattern: str) -> np.ndarray:
    if len(arr) == 0:
        return np.zeros(0, dtype=bool)
    return _np(pc.match_substring_regex(arr, pattern)).astype(bool)


def _scatter(base: pa.Array, idx: list[np.ndarray], vals: list[pa.Array]) -> pa.Array:
    """``base`` with ``vals`` put at positions ``idx`` (disjoint)."""
    positions = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    if not len(positions):
        return base
    mask = np.zeros(len(base), dtype=bool)
    mask[positions] = True
    order = np.argsort(positions, kind="stable")
    values = pa.concat_arrays([v.cast(STRING) for v in vals]).take(pa.array(order))
    return pc.replace_with_mask(base, pa.array(mask), values)


# --------------------------------------------------------------------------- metadata


@cache
def _re2_ok(pattern: str) -> bool:
    try:
        pc.match_substring_regex(pa.array([""], STRING), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _length_table(lengths: Sequence[int]) -> np.ndarray:
    """Boolean lookup by length (index) up to the longest input the fast path takes."""
    table = np.zeros(_MAX_INPUT + 1, dtype=bool)
    table[[n for n in lengths if 0 <= n <= _MAX_INPUT]] = True
    return table


@dataclass(frozen=True)
class _Desc:
    """A PhoneNumberDesc as _is_number_matching_desc reads it."""

    pattern: str | None  # anchored RE2 full match; None matches nothing
    lengths: np.ndarray | None  # by length (index): possible; None: any

    @classmethod
    def of(cls, desc: PhoneNumberDesc | None) -> _Desc:
        if desc is None or not desc.national_number_pattern:
            return cls(None, None)
        lengths = _length_table(desc.possible_length) if desc.possible_length else None
        return cls(f"^(?:{desc.national_number_pattern})$", lengths)

    def match(self, nsn: pa.Array, lengths: np.ndarray, todo: np.ndarray) -> np.ndarray:
        """Matches among the rows in ``todo`` (others False); regexes only run where needed."""
        hit = np.zeros(len(nsn), dtype=bool)
        if self.pattern is None:
            return hit
        todo = todo if self.lengths is None else todo & self.lengths[lengths]
        rows = np.flatnonzero(todo)
        if len(rows) == len(nsn):
            return _matches(nsn, self.pattern)
        if len(rows):
            hit[rows] = _matches(nsn.filter(pa.array(todo)), self.pattern)
        return hit


@dataclass(frozen=True)
class _Meta:
    """One region's (or non-geographic entity's) metadata, prepared for Arrow."""

    usable: bool  # every pattern compiles in RE2
    general: _Desc
    types: tuple[_Desc, ...]
    mobile: _Desc  # matches nothing when mobile and fixed line share a pattern
    leading_digits: str | None  # anchored RE2 prefix match
    prefixes: tuple[str, ...]  # plain national prefixes for parsing (prefix-free)
    prefix_regex: str | None  # a national prefix we do not emulate: rows it matches fall back
    keeps: np.ndarray  # by length: _test_number_length is IS_POSSIBLE or TOO_LONG

    @classmethod
    def of(cls, meta: PhoneMetadata) -> _Meta:
        general = _Desc.of(meta.general_desc)
        types = tuple(_Desc.of(getattr(meta, name)) for name in _TYPE_DESCS)
        mobile = _Desc(None, None)
        if not meta.same_mobile_and_fixed_line_pattern:
            mobile = _Desc.of(meta.mobile)
        leading = f"^(?:{meta.leading_digits})" if meta.leading_digits else None
        prefixes: tuple[str, ...] = ()
        prefix_regex = None
        npfp = meta.national_prefix_for_parsing
        if npfp:
            literals = npfp.split("|")
            plain = _PLAIN_ALTERNATIVES.fullmatch(npfp) and not meta.national_prefix_transform_rule
            if plain and not any(a != b and b.startswith(a) for a in literals for b in literals):
                prefixes = tuple(dict.fromkeys(literals))
            else:
                prefix_regex = f"^(?:{npfp})"
        patterns = [d.pattern for d in (general, mobile, *types) if d.pattern]
        patterns += [p for p in (leading, prefix_regex) if p]
        possible = sorted(meta.general_desc.possible_length)
        keeps = _length_table(possible)
        if possible:
            keeps[possible[-1] + 1 :] = True
        keeps &= ~_length_table(meta.general_desc.possible_length_local_only)
        return cls(
            usable=bool(possible) and all(_re2_ok(p) for p in patterns),
            general=general,
            types=types,
            mobile=mobile,
            leading_digits=leading,
            prefixes=prefixes,
            prefix_regex=prefix_regex,
            keeps=keeps,
        )

    def general_pattern(self, nsn: pa.Array) -> np.ndarray:
        """_match_national_number against the general desc (pattern only, no lengths)."""
        if self.general.pattern is None:
            return np.zeros(len(nsn), dtype=bool)
        return _matches(nsn, self.general.pattern)

    def is_valid(self, nsn: pa.Array, lengths: np.ndarray, todo: np.ndarray) -> np.ndarray:
        """_number_type_helper(nsn) != UNKNOWN, among the rows in ``todo``."""
        valid = self.general.match(nsn, lengths, todo)
        typed = np.zeros(len(nsn), dtype=bool)
        for desc in (self.types[-1], self.mobile, *self.types[:-1]):  # fixed line first
            typed |= desc.match(nsn, lengths, valid & ~typed)
        return valid & typed


@cache
def _meta(region: str, country_code: int) -> _Meta | None:
    if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        meta = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
    else:
        meta = PhoneMetadata.metadata_for_region(region, None)
    return None if meta is None else _Meta.of(meta)


@cache
def _cc_usable(country_code: int) -> bool:
    metas = [_meta(r, country_code) for r in COUNTRY_CODE_TO_REGION_CODE[country_code]]
    return metas[0] is not None and all(m is None or m.usable for m in metas)


@cache
def _codes_by_length() -> dict[int, pa.Array]:
    """Country calling codes as text, by length (they are prefix-free)."""
    codes = sorted(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE)
    return {n: pa.array([c for c in codes if len(c) == n], STRING) for n in (1, 2, 3)}


@dataclass(frozen=True)
class _Home:
    """The default region: its metadata, country code and international prefix."""

    meta: _Meta
    country_code: int
    idd: str | None  # a plain international prefix such as "00"
    idd_regex: str | None  # any other: numbers it matches fall back


@cache
def _home(region: str) -> _Home | None:
    meta = PhoneMetadata.metadata_for_region(region, None)
    if region not in phonenumbers.SUPPORTED_REGIONS or meta is None:
        return None
    prepared = _meta(region, meta.country_code)
    if prepared is None or not prepared.usable:
        return None
    idd = meta.international_prefix
    plain = idd if idd and _PLAIN.fullmatch(idd) else None
    regex = f"^(?:{idd})" if idd and not plain else None
    if regex and not _re2_ok(regex):
        return None
    return _Home(prepared, meta.country_code, plain, regex)


# --------------------------------------------------------------------------- the fast path


def _fast_path(
    arr: pa.StringArray, region: str
) -> tuple[np.ndarray, list[np.ndarray], list[pa.Array]]:
    """(decided mask, positions, E.164 or null at those positions) for the decided values."""
    n = len(arr)
    decided = ~_np(arr.is_valid()).astype(bool)  # null in, null out
    home = _home(region)
    if home is None or n == 0:
        return decided, [], []
    filled = arr.fill_null("")
    decided |= _np(pc.equal(filled, "")).astype(bool)  # not a viable number
    shaped = _matches(filled, _SHAPE) & (_lengths(filled) <= _MAX_INPUT) & ~decided
    rows = np.flatnonzero(shaped)
    text = filled.filter(pa.array(shaped))
    digits = _ascii_digits(text)
    keep = _lengths(digits) >= 3  # fewer: phonenumbers' viability rules get subtle
    rows, text, digits = rows[keep], text.filter(pa.array(keep)), digits.filter(pa.array(keep))
    plus = _np(pc.match_substring(text, "+")).astype(bool)  # the shape allows it only in front

    idx: list[np.ndarray] = []
    vals: list[pa.Array] = []

    def take(group: np.ndarray, nnn: pa.Array, cc: int, meta: _Meta | None) -> None:
        done, e164s = _group(nnn, cc, meta)
        decided[group[done]] = True
        idx.append(group[done])
        vals.append(e164s.filter(pa.array(done)))

    intl_rows = [rows[plus]]
    bodies = [digits.filter(pa.array(plus))]
    national = ~plus
    nat_rows, nat = rows[national], digits.filter(pa.array(national))
    if home.idd:
        k = len(home.idd)
        starts = _np(pc.starts_with(nat, home.idd)).astype(bool)
        after = ~_np(pc.starts_with(nat, home.idd + "0")).astype(bool)  # then not an IDD
        stripped = starts & after & (_lengths(nat) - k > 2)
        intl_rows.append(nat_rows[stripped])
        bodies.append(pc.utf8_slice_codeunits(nat.filter(pa.array(stripped)), k))
        national = ~starts
    elif home.idd_regex:
        national = ~_matches(nat, home.idd_regex)
    else:
        national = np.ones(len(nat), dtype=bool)
    # A national number starting with the region's own country code: phonenumbers may strip it.
    national &= ~_np(pc.starts_with(nat, str(home.country_code))).astype(bool)
    take(nat_rows[national], nat.filter(pa.array(national)), home.country_code, home.meta)

    intl_rows_all = np.concatenate(intl_rows)
    if len(intl_rows_all):
        body = pa.concat_arrays(bodies)
        codes = _country_codes(body)  # 0: none, the plus retry path: fall back
        for cc in np.unique(codes[codes > 0]).tolist():
            sel = pa.array(codes == cc)
            rest = pc.utf8_slice_codeunits(body.filter(sel), len(str(cc)))
            main = COUNTRY_CODE_TO_REGION_CODE[cc][0]
            take(intl_rows_all[codes == cc], rest, cc, _meta(main, cc))
    return decided, idx, vals


def _ascii_digits(text: pa.StringArray) -> pa.StringArray:
    """The ASCII digits of each (null-free) string, on the bytes: a fraction of the cost of
    ``replace_substring_regex``, and exact for the ASCII the shape admits."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset :][: len(text) + 1]
    data_buffer = text.buffers()[2]
    if data_buffer is None or not len(text):
        return pa.array([""] * len(text), STRING)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    keep = (data >= ord("0")) & (data <= ord("9"))
    kept = np.concatenate((np.zeros(1, np.int32), np.cumsum(keep, dtype=np.int32)))
    new_offsets = kept[offsets - offsets[0]]
    return pa.StringArray.from_buffers(
        len(text), pa.py_buffer(new_offsets), pa.py_buffer(data[keep].tobytes())
    )


def _country_codes(body: pa.Array) -> np.ndarray:
    """_extract_country_code: the country code each digit string starts with, or 0."""
    codes = np.zeros(len(body), dtype=np.int64)
    for size, known in _codes_by_length().items():
        prefix = pc.utf8_slice_codeunits(body, 0, size)
        found = _np(pc.is_in(prefix, value_set=known)).astype(bool) & (codes == 0)
        if found.any():
            codes[found] = _np(pc.cast(prefix.filter(pa.array(found)), pa.int64()))
    return codes


def _group(nnn: pa.Array, cc: int, meta: _Meta | None) -> tuple[np.ndarray, pa.Array]:
    """One country code's national numbers, read with ``meta`` (the default region's for
    national numbers, the country code's main region's after + or IDD): (decided, E.164)."""
    n = len(nnn)
    if n == 0 or meta is None or not meta.usable or not _cc_usable(cc):
        return np.zeros(n, dtype=bool), pa.nulls(n, STRING)
    decided = np.ones(n, dtype=bool)
    before = _lengths(nnn)
    if meta.prefix_regex:
        decided &= ~_matches(nnn, meta.prefix_regex)
    nnn = _strip_prefixes(nnn, meta)
    lengths = _lengths(nnn)
    ok = (before >= _MIN_NSN) & (lengths >= _MIN_NSN) & (lengths <= _MAX_NSN) & decided
    valid = _valid(cc, nnn, lengths, ok)
    e164s = pc.binary_join_element_wise(f"+{cc}", nnn, "")
    return decided, pc.if_else(pa.array(valid), e164s, pa.scalar(None, STRING))


def _strip_prefixes(nnn: pa.Array, meta: _Meta) -> pa.Array:
    """_maybe_strip_national_prefix_carrier_code with plain prefixes, then parse's length test.

    The prefixes are prefix-free, so at most one matches each number (tested on the original).
    """
    idx: list[np.ndarray] = []
    vals: list[pa.Array] = []
    for prefix in meta.prefixes:
        mask = _np(pc.starts_with(nnn, prefix)).astype(bool)
        starts = np.flatnonzero(mask)
        if not len(starts):
            continue
        original = nnn.filter(pa.array(mask))
        stripped = pc.utf8_slice_codeunits(original, len(prefix))
        refused = meta.general_pattern(original)  # viable before, and not after: keep it
        if refused.any():
            refused[refused] = ~meta.general_pattern(stripped.filter(pa.array(refused)))
        apply = ~refused & meta.keeps[_lengths(stripped)]
        idx.append(starts[apply])
        vals.append(stripped.filter(pa.array(apply)))
    return _scatter(nnn, idx, vals) if idx else nnn


def _valid(cc: int, nsn: pa.Array, lengths: np.ndarray, todo: np.ndarray) -> np.ndarray:
    """is_valid_number: the region from region_code_for_number, then its type check."""
    regions = COUNTRY_CODE_TO_REGION_CODE[cc]
    if len(regions) == 1:
        meta = _meta(regions[0], cc)
        return meta.is_valid(nsn, lengths, todo) if meta else np.zeros(len(nsn), dtype=bool)
    valid = np.zeros(len(nsn), dtype=bool)
    remaining = todo.copy()
    for region in regions:  # _region_code_for_number_from_list
        meta = _meta(region, cc)
        if meta is None or not remaining.any():
            continue
        if meta.leading_digits:
            hit = np.zeros(len(nsn), dtype=bool)
            rows = np.flatnonzero(remaining)
            hit[rows] = _matches(nsn.filter(pa.array(remaining)), meta.leading_digits)
            valid |= meta.is_valid(nsn, lengths, hit)
        else:
            hit = meta.is_valid(nsn, lengths, remaining)
            valid |= hit
        remaining &= ~hit
    return valid
