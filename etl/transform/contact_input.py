"""Spreadsheet contacts to the *contact load frame* (see ``etl.load.crm_contacts``).

Pure functions: a header mapping (automatic from common column names, overridable), then a
vectorised normalisation of a chunk of raw string cells (Arrow end to end; the cell rules are
in :mod:`etl.transform.contact_rules`). Every input row comes out either as a contact or as a
reject with its line and every reason, never both and never neither. Python runs per row only
for the rejected rows (their reasons and original values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform import contact_rules as rules
from etl.transform.contact_rules import normalize_email as _normalize_email

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

_QUOTE_LIMIT = 60


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
    """``contacts``: the contact load frame (:func:`load_frame_schema`); ``rejects``: ``line``
    (int64), ``reason`` and ``values`` (the row's original cells as JSON)."""

    contacts: pa.Table
    rejects: pa.Table


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


# --------------------------------------------------------------------------- normalising

Texts = Callable[[np.ndarray], list[str]]


class _Problems:
    """Reasons per row position, in the order the rules run. Texts are built only for the
    rows a rule flags (few), never for the whole column."""

    def __init__(self) -> None:
        self.by_row: dict[int, list[str]] = {}

    def add(self, mask: np.ndarray, reasons: str | Texts) -> None:
        positions = np.flatnonzero(mask)
        if len(positions):
            texts = [reasons] * len(positions) if isinstance(reasons, str) else reasons(positions)
            self._extend(positions, texts)

    def invalid(self, what: str, raw: pa.Array, mask: np.ndarray) -> None:
        """ "invalid <what> '<the trimmed input>'" where ``mask`` is set."""
        self.add(mask, lambda rows: [f"invalid {what} {_quoted(v)}" for v in _cells(raw, rows)])

    def rejected_by_rule(self, what: str, raw: pa.Array, result: pa.Array) -> None:
        """Rows with a value that the rule turned into null."""
        self.invalid(what, raw, _present(raw) & ~_present(result))

    def too_long(self, column: str, values: pa.Array, limit: int) -> None:
        if (pc.max(pc.binary_length(values)).as_py() or 0) <= limit:
            return  # no value has more bytes, so none has more characters
        sizes = rules.lengths(values)
        positions = np.flatnonzero(sizes > limit)
        self._too_long(column, "is", positions, sizes[positions], limit)

    def tag_too_long(self, column: str, tags: rules.Tags, limit: int) -> None:
        self._too_long(column, "has a tag of", tags.over, tags.longest, limit)

    def _too_long(
        self, column: str, what: str, positions: np.ndarray, sizes: np.ndarray, limit: int
    ) -> None:
        texts = [
            f"field {column!r} {what} {n} characters, the limit is {limit}" for n in sizes.tolist()
        ]
        self._extend(positions, texts)

    def _extend(self, positions: np.ndarray, texts: list[str]) -> None:
        for position, text in zip(positions.tolist(), texts, strict=True):
            self.by_row.setdefault(position, []).append(text)


def _present(values: pa.Array) -> np.ndarray:
    return np.asarray(values.is_valid(), dtype=bool)


def _cells(values: pa.Array, positions: np.ndarray) -> list[str]:
    return values.take(pa.array(positions)).to_pylist()


def _quoted(value: str) -> str:
    short = value[:_QUOTE_LIMIT]
    return f"'{short}…'" if len(value) > _QUOTE_LIMIT else f"'{short}'"


def _as_table(cells: pa.Table | pd.DataFrame) -> pa.Table:
    """String columns (any Arrow string type) as one-chunk ``string`` columns."""
    if isinstance(cells, pd.DataFrame):
        frame = cells.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        cells = pa.Table.from_pandas(frame.astype("str"), preserve_index=False)
    columns = [
        column.cast(rules.STRING).combine_chunks()
        if column.num_chunks != 1 or column.type != rules.STRING
        else column.chunk(0)
        for column in cells.columns
    ]
    return pa.Table.from_arrays(columns, names=cells.column_names)


def normalize_chunk(
    cells: pa.Table | pd.DataFrame,
    lines: Sequence[int] | np.ndarray,
    mapping: ColumnMapping,
    options: NormalizeOptions | None = None,
) -> NormalizedChunk:
    """The contact load frame (``row`` = source line) and the rejects of one chunk of string
    cells (an Arrow table, or a DataFrame of ``str`` columns)."""
    options = options or NormalizeOptions()
    table = _as_table(cells)
    if len(lines) != table.num_rows:
        raise ValueError(f"{len(lines)} line numbers for {table.num_rows} rows")
    missing = [h for h in (*mapping.columns, *mapping.properties) if h not in table.column_names]
    if missing:
        raise MappingError(
            "the mapping names columns the input lacks: " + ", ".join(map(repr, missing))
        )
    if "email" not in mapping.columns.values():
        raise MappingError("no column is mapped to email")
    limit = options.max_length
    source = {column: table.column(header).chunk(0) for header, column in mapping.columns.items()}
    problems = _Problems()
    out: dict[str, pa.Array] = {}

    raw, out["email"], valid = _normalize_email(source["email"])
    problems.add(~_present(raw), "missing email")
    problems.invalid("email", raw, _present(raw) & ~valid)
    problems.too_long("email", out["email"], limit)

    if any(column in source for column in NAME_COLUMNS):
        empty = pa.nulls(table.num_rows, rules.STRING)
        cleaned = [
            rules.clean(source[c], collapse=True) if c in source else empty for c in NAME_COLUMNS
        ]
        out.update(rules.names(*cleaned)._asdict())
    for column in CANONICAL_COLUMNS:
        if column not in source or column in out:
            continue
        raw = rules.clean(source[column])
        if column in PHONE_COLUMNS and options.default_region:
            out[column] = rules.phones(raw, options.default_region)
            problems.rejected_by_rule(column, raw, out[column])
        elif column == "birthday":
            out[column] = rules.parse_birthdays(raw, dayfirst=options.dayfirst)
            problems.rejected_by_rule(column, raw, out[column])
        elif column == "tags":
            tags = rules.split_tags(raw, limit)
            out[column] = tags.tags
            problems.tag_too_long(column, tags, limit)
            continue
        else:
            out[column] = raw
        problems.too_long(column, out[column], limit)

    properties: dict[str, pa.Array] = {}
    for header, name in mapping.properties.items():
        properties[name] = rules.clean(table.column(header).chunk(0))
        problems.too_long(name, properties[name], limit)

    line_numbers = np.asarray(lines, dtype=np.int64)
    arrays: dict[str, pa.Array] = {"row": pa.array(line_numbers), **out}
    if problems.by_row:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[list(problems.by_row)] = False
        kept = pa.array(keep)
        arrays = {name: values.filter(kept) for name, values in arrays.items()}
        properties = {name: values.filter(kept) for name, values in properties.items()}
    if mapping.properties:
        arrays["properties"] = rules.property_map(list(properties), list(properties.values()))
    schema = load_frame_schema(mapping)
    contacts = pa.Table.from_arrays([arrays[name] for name in schema.names], schema=schema)
    return NormalizedChunk(contacts=contacts, rejects=_rejects(table, line_numbers, problems))


_encode = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept (C-accelerated)
_REJECTS_SCHEMA = pa.schema(
    [("line", pa.int64()), ("reason", pa.string()), ("values", pa.string())]
)


def _rejects(table: pa.Table, lines: np.ndarray, problems: _Problems) -> pa.Table:
    positions = np.array(sorted(problems.by_row), dtype=np.int64)
    return pa.Table.from_arrays(
        [
            pa.array(lines[positions], pa.int64()),
            pa.array(["; ".join(problems.by_row[p]) for p in positions.tolist()], pa.string()),
            pa.array(_json_rows(table.take(pa.array(positions))), pa.string()),
        ],
        schema=_REJECTS_SCHEMA,
    )


def _json_rows(table: pa.Table) -> list[str]:
    """Each row as ``json.dumps(row_dict, ensure_ascii=False)`` gives it (string cells), built
    column by column: a third of the cost of a dict and an encode per row."""
    if not table.num_columns:
        return ["{}"] * table.num_rows
    cells = [
        [f"{_encode(name)}: " + ("null" if v is None else _encode(v)) for v in column.to_pylist()]
        for name, column in zip(table.column_names, table.columns, strict=True)
    ]
    return ["{" + ", ".join(row) + "}" for row in zip(*cells, strict=True)]


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


# --------------------------------------------------------------------------- duplicates


def _series(values: pa.Array) -> pd.Series:
    return pd.Series(values, dtype="str")


def email_keys(cells: pa.Table | pd.DataFrame, mapping: ColumnMapping) -> pd.Series:
    """The normalised email of each row (NA where missing or invalid), for the first pass."""
    header = next((h for h, c in mapping.columns.items() if c == "email"), None)
    if header is None:
        raise MappingError("no column is mapped to email")
    table = _as_table(cells)
    return _series(_normalize_email(table.column(header).chunk(0))[1])


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
