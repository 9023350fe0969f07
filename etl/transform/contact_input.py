"""Spreadsheet contacts to the *contact load frame* (see ``etl.load.crm_contacts``).

Pure functions: a header mapping (automatic from common column names, overridable), then a
vectorised normalisation of a chunk of raw string cells. Every input row comes out either as a
contact or as a reject with its line and every reason, never both and never neither.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa

CANONICAL_COLUMNS = (
    "email",
    "name",
    "first_name",
    "last_name",
    "phone",
    "fax",
    "company",
    "street",
    "zip_code",
    "city",
    "province",
    "country",
    "state",
    "external_id",
    "birthday",
    "tags",
)
NAME_COLUMNS = ("name", "first_name", "last_name")
PHONE_COLUMNS = ("phone", "fax")
IGNORE = "ignore"
PROPERTIES_PREFIX = "properties."

# Header spellings per column, best first; compared with case and punctuation removed.
_ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "emailaddress",
        "email1",
        "emailaddress1",
        "primaryemail",
        "mail",
        "mailaddress",
        "emailadresse",
        "workemail",
        "businessemail",
        "personalemail",
    ),
    "name": ("fullname", "name", "contactname", "contact", "displayname", "customername"),
    "first_name": ("firstname", "givenname", "forename", "first", "vorname"),
    "last_name": ("lastname", "surname", "familyname", "last", "nachname"),
    "phone": (
        "phone",
        "phonenumber",
        "phone1",
        "primaryphone",
        "telephone",
        "telephonenumber",
        "tel",
        "telefon",
        "telefonnummer",
        "businessphone",
        "workphone",
        "homephone",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "mobile1",
        "cell",
        "cellphone",
        "cellnumber",
        "handy",
    ),
    "fax": ("fax", "faxnumber", "fax1", "telefax", "businessfax"),
    "company": (
        "company",
        "companyname",
        "organisation",
        "organization",
        "organisationname",
        "organizationname",
        "accountname",
        "account",
        "employer",
        "firma",
    ),
    "street": (
        "street",
        "streetaddress",
        "address",
        "address1",
        "addressline1",
        "street1",
        "streetline1",
        "strasse",
    ),
    "zip_code": (
        "zip",
        "zipcode",
        "postalcode",
        "postcode",
        "postal",
        "zippostalcode",
        "postalzipcode",
        "zippostcode",
        "plz",
    ),
    "city": ("city", "town", "locality", "ort", "stadt"),
    "province": (
        "state",
        "province",
        "region",
        "county",
        "stateprovince",
        "provincestate",
        "stateregion",
        "bundesland",
    ),
    "country": ("country", "countryregion", "countryname", "countrycode", "nation", "land"),
    "state": ("contactstate",),
    "external_id": (
        "externalid",
        "extid",
        "externalref",
        "externalreference",
        "customerid",
        "customernumber",
        "contactid",
        "id",
        "recordid",
    ),
    "birthday": ("birthday", "birthdate", "dateofbirth", "dob", "geburtstag", "geburtsdatum"),
    "tags": ("tags", "tag", "labels", "label"),
}
_ALIAS_RANK = {
    alias: (column, rank)
    for column, aliases in _ALIASES.items()
    for rank, alias in enumerate(aliases)
}

# One @, no spaces or address-list punctuation, a domain of non-empty dot-separated labels.
EMAIL_PATTERN = r"[^@\s<>(),;:\"\[\]]+@(?:[^@\s<>(),;:\"\[\]\.]+\.)+[^@\s<>(),;:\"\[\]\.]+"
_TAG_SEPARATORS = re.compile(r"[;,|]")
_QUOTE_LIMIT = 60

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
_MONTHS = {name: str(n) for n, names in enumerate(_MONTH_NAMES, start=1) for name in names}
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
_WORD = r"([^\W\d_]+)"


class MappingError(ValueError):
    """The column mapping cannot work with this header; the message names what is wrong."""


@dataclass(frozen=True)
class ColumnMapping:
    """Header name -> canonical column, header -> property name, and headers left out."""

    columns: dict[str, str]
    properties: dict[str, str]
    ignored: tuple[str, ...]

    def describe(self) -> list[str]:
        lines = [f'"{header}" -> {column}' for header, column in self.columns.items()]
        lines += [f'"{header}" -> properties["{name}"]' for header, name in self.properties.items()]
        lines += [f'"{header}" -> (ignored)' for header in self.ignored]
        return lines


@dataclass(frozen=True)
class NormalizeOptions:
    """``default_region``: ISO country for phone numbers without +code (E.164 output when set);
    ``dayfirst``: read 03/04/1990 as 3 April (else March 4)."""

    default_region: str | None = None
    max_length: int = 255
    dayfirst: bool = True

    def __post_init__(self) -> None:
        if self.default_region is not None:
            region = self.default_region.strip().upper()
            if region not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"unknown phone region {self.default_region!r} (use e.g. 'DE')")
            object.__setattr__(self, "default_region", region)
        if self.max_length < 1:
            raise ValueError("max_length must be at least 1")


@dataclass
class NormalizedChunk:
    """``contacts``: the contact load frame; ``rejects``: ``line``, ``reason``, ``values``."""

    contacts: pd.DataFrame
    rejects: pd.DataFrame


# --------------------------------------------------------------------------- mapping


def _header_key(header: str) -> str:
    return re.sub(r"[\W_]+", "", header.casefold())


def auto_map(headers: Sequence[str]) -> dict[str, str]:
    """Header -> canonical column for the headers with a known name; for two headers naming
    one column the better-known spelling wins ("Phone" over "Mobile"), then the first."""
    best: dict[str, tuple[int, int, str]] = {}
    for position, header in enumerate(headers):
        found = _ALIAS_RANK.get(_header_key(header))
        if found is None:
            continue
        column, rank = found
        if column not in best or (rank, position) < best[column][:2]:
            best[column] = (rank, position, header)
    chosen = {header: column for column, (_, _, header) in best.items()}
    return {header: chosen[header] for header in headers if header in chosen}


def _explicit_header(key: str, headers: Sequence[str]) -> str:
    if key in headers:
        return key
    matches = [h for h in headers if h.strip().casefold() == key.strip().casefold()]
    if len(matches) == 1:
        return matches[0]
    raise MappingError(
        f"the mapping names column {key!r}, which is not in the input; the columns are: "
        + ", ".join(repr(h) for h in headers)
    )


def _target(header: str, target: str) -> tuple[str, str]:
    """("column", name) | ("property", name) | ("ignore", "")."""
    text = str(target).strip()
    if text == IGNORE:
        return IGNORE, ""
    if text.startswith(PROPERTIES_PREFIX) and text[len(PROPERTIES_PREFIX) :].strip():
        return "property", text[len(PROPERTIES_PREFIX) :].strip()
    if text in CANONICAL_COLUMNS:
        return "column", text
    raise MappingError(
        f"unknown target {target!r} for column {header!r}: use one of "
        + ", ".join(CANONICAL_COLUMNS)
        + ", properties.<Name> or ignore"
    )


def build_mapping(
    headers: Sequence[str],
    explicit: Mapping[str, str] | None = None,
    *,
    unmapped: Literal["properties", "ignore"] = "properties",
) -> ColumnMapping:
    """The automatic mapping with ``explicit`` entries on top; other headers become
    properties named after the header, or are ignored."""
    headers = list(headers)
    if unmapped not in ("properties", "ignore"):
        raise ValueError(f"unmapped must be 'properties' or 'ignore', not {unmapped!r}")
    repeated = sorted({h for h in headers if headers.count(h) > 1})
    if repeated:
        raise MappingError("the header repeats " + ", ".join(repr(h) for h in repeated))
    chosen: dict[str, tuple[str, str]] = {}
    for key, target in (explicit or {}).items():
        header = _explicit_header(key, headers)
        chosen[header] = _target(header, target)
    claimed = {name for kind, name in chosen.values() if kind == "column"}
    for header, column in auto_map([h for h in headers if h not in chosen]).items():
        if column not in claimed:
            chosen[header] = ("column", column)
    columns: dict[str, str] = {}
    properties: dict[str, str] = {}
    ignored: list[str] = []
    owner: dict[tuple[str, str], str] = {}
    for header in headers:
        default = ("property", header) if unmapped == "properties" else (IGNORE, "")
        kind, name = chosen.get(header, default)
        if kind in ("column", "property"):
            if (kind, name) in owner:
                where = name if kind == "column" else f'properties["{name}"]'
                raise MappingError(
                    f"columns {owner[kind, name]!r} and {header!r} are both mapped to {where}"
                )
            owner[kind, name] = header
            (columns if kind == "column" else properties)[header] = name
        else:
            ignored.append(header)
    if "email" not in columns.values():
        raise MappingError(
            "no column is mapped to email; the columns are: "
            + ", ".join(repr(h) for h in headers)
            + ' (map one explicitly, e.g. "E-mail" = "email")'
        )
    return ColumnMapping(columns=columns, properties=properties, ignored=tuple(ignored))


# --------------------------------------------------------------------------- cell rules


def _clean(values: pd.Series, *, collapse: bool = False) -> pd.Series:
    """Trimmed text, inner whitespace collapsed on request, "" -> NA."""
    text = values.astype("str").str.strip()
    if collapse:
        text = text.str.replace(r"\s+", " ", regex=True)
    return text.mask(text == "")


def _quoted(values: pd.Series) -> pd.Series:
    short = values.str.slice(0, _QUOTE_LIMIT)
    short = short.where(values.str.len() <= _QUOTE_LIMIT, short + "…")
    return "'" + short + "'"


def _lengths(values: pd.Series) -> np.ndarray:
    return values.str.len().fillna(0).to_numpy(dtype=np.int64)


def _flags(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=bool, na_value=False)


def normalize_email(values: pd.Series) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """(trimmed input, lower-case address or NA, valid flags)."""
    raw = _clean(values)
    lower = raw.str.lower()
    valid = _flags(lower.str.fullmatch(EMAIL_PATTERN))
    return raw, lower.where(valid), valid


@lru_cache(maxsize=1 << 16)
def _e164(value: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{text};ext={number.extension}" if number.extension else text


def _phones(raw: pd.Series, region: str) -> pd.Series:
    table = {value: _e164(value, region) for value in raw.dropna().unique()}
    return raw.map(table).astype("str")


_BIRTHDAY_FORMATS: tuple[tuple[str, str], ...] = (
    (rf"(\d{{4}})-(\d{{1,2}})-(\d{{1,2}}){_TIME}", "ymd"),
    (r"(\d{4})(\d{2})(\d{2})", "ymd"),
    (r"(\d{4})/(\d{1,2})/(\d{1,2})", "ymd"),
    (r"(\d{1,2})\.\s?(\d{1,2})\.\s?(\d{4})", "dmy"),
    (r"(\d{1,2})/(\d{1,2})/(\d{4})", "slash"),
    (r"(\d{1,2})-(\d{1,2})-(\d{4})", "slash"),
    (rf"(\d{{1,2}})\.?\s+{_WORD}\.?,?\s+(\d{{4}})", "dMy"),
    (rf"{_WORD}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})", "Mdy"),
)


def parse_birthdays(raw: pd.Series, *, dayfirst: bool = True) -> pd.Series:
    """``YYYYMMDD`` text, NA where ``raw`` is NA or not a real past date from 1900 on."""
    distinct = pd.Series(raw.dropna().unique(), dtype="str")
    parsed = _parse_dates(distinct, dayfirst=dayfirst)
    table = dict(zip(distinct.tolist(), parsed.tolist(), strict=True))
    return raw.map(table).astype("str")


def _parse_dates(raw: pd.Series, *, dayfirst: bool) -> pd.Series:
    year = pd.Series(pd.NA, index=raw.index, dtype="str")
    month = year.copy()
    day = year.copy()
    todo = raw.notna()
    for pattern, order in _BIRTHDAY_FORMATS:
        if not todo.any():
            break
        found = raw[todo].str.extract(f"^{pattern}$", flags=re.IGNORECASE)
        found = found[found[0].notna()]
        if found.empty:
            continue
        if order == "slash":
            order = "dmy" if dayfirst else "mdy"
        parts = dict(zip(order, (found[0], found[1], found[2]), strict=True))
        if "M" in parts:
            parts["m"] = parts.pop("M").str.lower().map(_MONTHS)
        year[found.index], month[found.index], day[found.index] = parts["y"], parts["m"], parts["d"]
        todo[found.index] = False
    ymd = year + month.str.zfill(2) + day.str.zfill(2)
    dates = pd.to_datetime(ymd.where(ymd.str.len() == 8), format="%Y%m%d", errors="coerce")
    ok = dates.notna() & (dates.dt.year >= 1900) & (dates <= pd.Timestamp.today())
    return ymd.where(_flags(ok))


@lru_cache(maxsize=1 << 14)
def _split_tags(value: str) -> tuple[str, ...]:
    parts = (part.strip() for part in _TAG_SEPARATORS.split(value))
    return tuple(dict.fromkeys(part for part in parts if part))


# --------------------------------------------------------------------------- normalising


class _Problems:
    """Reasons per row position, in the order the rules run."""

    def __init__(self) -> None:
        self.by_row: dict[int, list[str]] = {}

    def add(self, mask: np.ndarray | pd.Series, reasons: pd.Series | str) -> None:
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        if len(positions):
            texts = (
                [reasons] * len(positions)
                if isinstance(reasons, str)
                else reasons.iloc[positions].tolist()
            )
            self._extend(positions, texts)

    def too_long(self, column: str, values: pd.Series | np.ndarray, limit: int) -> None:
        """Values over the limit; an array gives the longest tag per row instead."""
        what = "is" if isinstance(values, pd.Series) else "has a tag of"
        lengths = _lengths(values) if isinstance(values, pd.Series) else values
        positions = np.flatnonzero(lengths > limit)
        texts = [
            f"field {column!r} {what} {n} characters, the limit is {limit}"
            for n in lengths[positions].tolist()
        ]
        self._extend(positions, texts)

    def _extend(self, positions: np.ndarray, texts: list[str]) -> None:
        for position, text in zip(positions.tolist(), texts, strict=True):
            self.by_row.setdefault(position, []).append(text)


def normalize_chunk(
    frame: pd.DataFrame,
    lines: Sequence[int],
    mapping: ColumnMapping,
    options: NormalizeOptions | None = None,
) -> NormalizedChunk:
    """The contact load frame (``row`` = source line) and the rejects of one chunk."""
    options = options or NormalizeOptions()
    if len(lines) != len(frame):
        raise ValueError(f"{len(lines)} line numbers for {len(frame)} rows")
    missing = [h for h in (*mapping.columns, *mapping.properties) if h not in frame.columns]
    if missing:
        raise MappingError(
            "the mapping names columns the input lacks: " + ", ".join(map(repr, missing))
        )
    if "email" not in mapping.columns.values():
        raise MappingError("no column is mapped to email")
    frame = frame.reset_index(drop=True)
    limit = options.max_length
    source = {column: header for header, column in mapping.columns.items()}
    problems = _Problems()
    out: dict[str, pd.Series] = {}

    raw, out["email"], valid = normalize_email(frame[source["email"]])
    problems.add(raw.isna(), "missing email")
    problems.add(raw.notna().to_numpy() & ~valid, "invalid email " + _quoted(raw))
    problems.too_long("email", out["email"], limit)

    if any(column in source for column in NAME_COLUMNS):
        out.update(_names(frame, source))
    for column in CANONICAL_COLUMNS:
        if column not in source or column in out:
            continue
        raw = _clean(frame[source[column]])
        if column in PHONE_COLUMNS and options.default_region:
            out[column] = _phones(raw, options.default_region)
            problems.add(raw.notna() & out[column].isna(), f"invalid {column} " + _quoted(raw))
        elif column == "birthday":
            out[column] = parse_birthdays(raw, dayfirst=options.dayfirst)
            problems.add(raw.notna() & out[column].isna(), "invalid birthday " + _quoted(raw))
        elif column == "tags":
            out[column], longest = _tags(raw)
            problems.too_long(column, longest, limit)
            continue
        else:
            out[column] = raw
        problems.too_long(column, out[column], limit)

    properties = None
    if mapping.properties:
        properties = _properties(frame, mapping.properties, problems, limit)

    rejected = np.zeros(len(frame), dtype=bool)
    rejected[list(problems.by_row)] = True
    keep = np.flatnonzero(~rejected)
    line_numbers = np.asarray(lines, dtype=np.int64)
    contacts = pd.DataFrame({"row": line_numbers[keep]})
    for column in CANONICAL_COLUMNS:
        if column in out:
            contacts[column] = out[column].iloc[keep].reset_index(drop=True)
    if properties is not None:
        keys, matrix = properties
        contacts["properties"] = pd.Series(_property_dicts(keys, matrix[keep]), dtype=object)
    return NormalizedChunk(contacts=contacts, rejects=_rejects(frame, line_numbers, problems))


def output_columns(mapping: ColumnMapping) -> list[str]:
    """The columns :func:`normalize_chunk` produces for ``mapping``, in order."""
    mapped = set(mapping.columns.values())
    if mapped & set(NAME_COLUMNS):
        mapped |= set(NAME_COLUMNS)
    columns = ["row", *(c for c in CANONICAL_COLUMNS if c in mapped)]
    return [*columns, "properties"] if mapping.properties else columns


def load_frame_schema(mapping: ColumnMapping) -> pa.Schema:
    """The Arrow schema of the contact load frame for ``mapping`` (e.g. to spill it to disk)."""
    types = {"row": pa.int64(), "tags": pa.list_(pa.string())}
    types["properties"] = pa.map_(pa.string(), pa.string())
    return pa.schema([(c, types.get(c, pa.string())) for c in output_columns(mapping)])


def _names(frame: pd.DataFrame, source: Mapping[str, str]) -> dict[str, pd.Series]:
    """Full name split into first / last (first token / rest, or "Last, First") where both
    are empty; first and last joined into the full name where it is empty."""
    empty = pd.Series(pd.NA, index=frame.index, dtype="str")
    name, first, last = (
        _clean(frame[source[c]], collapse=True) if c in source else empty.copy()
        for c in NAME_COLUMNS
    )
    split = name.notna() & first.isna() & last.isna()
    if split.any():
        full = name[split]
        comma = full.str.partition(",")
        reversed_ = (full.str.count(",") == 1) & (comma[0].str.strip() != "")
        reversed_ &= comma[2].str.strip() != ""
        token = full.str.partition(" ")
        first.loc[full.index] = token[0].where(~reversed_, comma[2].str.strip())
        last.loc[full.index] = token[2].where(~reversed_, comma[0].str.strip())
        last = last.mask(last == "")
    join = name.isna() & (first.notna() | last.notna())
    if join.any():
        name.loc[join] = (first[join].fillna("") + " " + last[join].fillna("")).str.strip()
    return {"name": name, "first_name": first, "last_name": last}


def _tags(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    table = {value: _split_tags(value) for value in raw.dropna().unique()}
    split = [table.get(value) or None for value in raw.to_numpy(dtype=object, na_value=None)]
    tags = pd.Series([list(t) if t else None for t in split], index=raw.index, dtype=object)
    longest = np.array([max(map(len, t)) if t else 0 for t in split], dtype=np.int64)
    return tags, longest


def _properties(
    frame: pd.DataFrame, names: Mapping[str, str], problems: _Problems, limit: int
) -> tuple[list[str], np.ndarray]:
    """Property names and a row x property matrix of trimmed values (None when empty)."""
    cleaned = {}
    for header, name in names.items():
        cleaned[name] = _clean(frame[header])
        problems.too_long(name, cleaned[name], limit)
    matrix = np.column_stack(
        [values.to_numpy(dtype=object, na_value=None) for values in cleaned.values()]
    )
    return list(cleaned), matrix


def _property_dicts(keys: list[str], matrix: np.ndarray) -> list[dict[str, str]]:
    return [
        {key: value for key, value in zip(keys, row, strict=True) if value is not None}
        for row in matrix
    ]


def _rejects(frame: pd.DataFrame, lines: np.ndarray, problems: _Problems) -> pd.DataFrame:
    positions = sorted(problems.by_row)
    headers = [str(h) for h in frame.columns]
    cells = frame.iloc[positions].to_numpy(dtype=object, na_value=None)
    originals = [dict(zip(headers, row, strict=True)) for row in cells]
    return pd.DataFrame(
        {
            "line": pd.Series(lines[positions], dtype=np.int64),
            "reason": pd.Series(["; ".join(problems.by_row[p]) for p in positions], dtype="str"),
            "values": pd.Series(
                [json.dumps(values, ensure_ascii=False) for values in originals],
                dtype="str",
            ),
        }
    )


# --------------------------------------------------------------------------- duplicates


def email_keys(frame: pd.DataFrame, mapping: ColumnMapping) -> pd.Series:
    """The normalised email of each row (NA where missing or invalid), for the first pass."""
    header = next((h for h, c in mapping.columns.items() if c == "email"), None)
    if header is None:
        raise MappingError("no column is mapped to email")
    return normalize_email(frame[header])[1]


def find_duplicates(
    emails: Sequence[str | None] | pd.Series,
    lines: Sequence[int] | np.ndarray,
    policy: Literal["last", "reject"],
) -> dict[int, int]:
    """{line of a dropped row: line of the row kept} over a whole file's emails.

    ``last``: every earlier occurrence of an email yields to its last one; ``reject``: every
    later occurrence is dropped in favour of the first. Emails are compared trimmed and
    lower-cased; NA never matches. Factorised codes and numpy arrays, no dict of emails.
    """
    if policy not in ("last", "reject"):
        raise ValueError(f"policy must be 'last' or 'reject', not {policy!r}")
    keys = pd.Series(emails, dtype="str").str.strip().str.lower()
    line_numbers = np.asarray(lines, dtype=np.int64)
    if len(line_numbers) != len(keys):
        raise ValueError(f"{len(line_numbers)} line numbers for {len(keys)} emails")
    codes, uniques = pd.factorize(keys.mask(keys == ""), use_na_sentinel=True)
    known = np.flatnonzero(codes >= 0)
    positions = np.arange(len(codes), dtype=np.int64)
    if policy == "last":
        keeper = np.full(len(uniques), -1, dtype=np.int64)
        np.maximum.at(keeper, codes[known], known)
    else:
        keeper = np.full(len(uniques), len(codes), dtype=np.int64)
        np.minimum.at(keeper, codes[known], known)
    kept = np.full(len(codes), -1, dtype=np.int64)
    kept[known] = keeper[codes[known]]
    dropped = np.flatnonzero((kept >= 0) & (kept != positions))
    return dict(
        zip(line_numbers[dropped].tolist(), line_numbers[kept[dropped]].tolist(), strict=True)
    )


def superseded_lines(keys: pd.Series, lines: Sequence[int]) -> dict[int, int]:
    """``find_duplicates`` with the "last" policy: each row superseded by a later one."""
    return find_duplicates(keys, lines, "last")
