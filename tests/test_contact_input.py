"""Header mapping and normalisation of spreadsheet contacts into the contact load frame."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etl.extract.csv_input import read_chunks, read_header, sniff
from etl.transform.contact_input import (
    CANONICAL_COLUMNS,
    ColumnMapping,
    MappingError,
    NormalizedChunk,
    NormalizeOptions,
    auto_map,
    build_mapping,
    email_keys,
    find_duplicates,
    load_frame_schema,
    normalize_chunk,
    superseded_lines,
)
from etl.transform.contact_rules import SPACE_CHARS

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def frame_of(rows: list[dict[str, str]]) -> pd.DataFrame:
    headers = list(rows[0])
    return pd.DataFrame({h: pd.Series([r[h] for r in rows], dtype="str") for h in headers})


def normalize(
    rows: list[dict[str, str]],
    explicit: dict[str, str] | None = None,
    **options: Any,
) -> NormalizedChunk:
    frame = frame_of(rows)
    mapping = build_mapping(list(frame.columns), explicit)
    result = normalize_chunk(
        frame, list(range(2, len(rows) + 2)), mapping, NormalizeOptions(**options)
    )
    assert len(result.contacts) + len(result.rejects) == len(frame)
    return result


def records(frame: pa.Table | pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NA as None (lists and dicts kept, a map as a dict)."""
    if isinstance(frame, pa.Table):
        rows = frame.to_pylist()
        for row in rows:
            if isinstance(row.get("properties"), list):
                row["properties"] = dict(row["properties"])
        return rows
    out = []
    for record in frame.to_dict("records"):
        out.append(
            {
                k: (None if not isinstance(v, list | dict) and pd.isna(v) else v)
                for k, v in record.items()
            }
        )
    return out


def reasons(result: NormalizedChunk) -> dict[int, str]:
    rejects = result.rejects
    return dict(zip(rejects["line"].to_pylist(), rejects["reason"].to_pylist(), strict=True))


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("First Name", "first_name"),
        ("Firstname", "first_name"),
        ("given_name", "first_name"),
        ("Last Name", "last_name"),
        ("SURNAME", "last_name"),
        ("Family Name", "last_name"),
        ("Full Name", "name"),
        ("Name", "name"),
        ("Contact Name", "name"),
        ("Email", "email"),
        ("E-mail", "email"),
        ("E-Mail Address", "email"),
        ("email_address", "email"),
        ("Phone", "phone"),
        ("Phone 1", "phone"),
        ("Phone Number", "phone"),
        ("Mobile", "phone"),
        ("Mobile Phone", "phone"),
        ("Cell", "phone"),
        ("Telephone", "phone"),
        ("Tel.", "phone"),
        ("Fax", "fax"),
        ("Company", "company"),
        ("Organisation", "company"),
        ("Organization", "company"),
        ("Account Name", "company"),
        ("Street", "street"),
        ("Address", "street"),
        ("Address 1", "street"),
        ("Street Address", "street"),
        ("Zip", "zip_code"),
        ("ZIP", "zip_code"),
        ("Zip Code", "zip_code"),
        ("Postal Code", "zip_code"),
        ("Postcode", "zip_code"),
        ("Zip/Postal Code", "zip_code"),
        ("City", "city"),
        ("Town", "city"),
        ("State", "province"),
        ("Province", "province"),
        ("Region", "province"),
        ("County", "province"),
        ("Country", "country"),
        ("Birthday", "birthday"),
        ("Birth Date", "birthday"),
        ("Date of Birth", "birthday"),
        ("DOB", "birthday"),
        ("Tags", "tags"),
        ("Labels", "tags"),
        ("External ID", "external_id"),
        ("zip_code", "zip_code"),
    ],
)
def test_auto_map_header_variants(header: str, column: str) -> None:
    assert auto_map([header]) == {header: column}


def test_auto_map_unknown_headers_and_first_match() -> None:
    headers = ["Mobile", "Notes", "Phone", "Email", "E-Mail Address", "Loyalty Tier"]
    assert auto_map(headers) == {"Phone": "phone", "Email": "email"}
    assert auto_map(["Phone 1", "Phone 2", "Phone"]) == {"Phone": "phone"}
    assert auto_map(["Mobile", "Cell"]) == {"Mobile": "phone"}


def test_build_mapping_automatic_with_properties() -> None:
    mapping = build_mapping(["E-mail", "First Name", "Loyalty Tier", "Mobile", "Phone"])
    assert mapping == ColumnMapping(
        columns={"E-mail": "email", "First Name": "first_name", "Phone": "phone"},
        properties={"Loyalty Tier": "Loyalty Tier", "Mobile": "Mobile"},
        ignored=(),
    )
    assert mapping.describe() == [
        '"E-mail" -> email',
        '"First Name" -> first_name',
        '"Phone" -> phone',
        '"Loyalty Tier" -> properties["Loyalty Tier"]',
        '"Mobile" -> properties["Mobile"]',
    ]


def test_build_mapping_explicit_overrides_and_unmapped_ignore() -> None:
    headers = ["Mail", "Phone", "Mobile", "Tier", "Notes", "Street"]
    mapping = build_mapping(
        headers,
        {"Mobile": "phone", "Tier": "properties.Customer Tier", "Street": "ignore"},
        unmapped="ignore",
    )
    assert mapping == ColumnMapping(
        columns={"Mail": "email", "Mobile": "phone"},
        properties={"Tier": "Customer Tier"},
        ignored=("Phone", "Notes", "Street"),
    )
    assert mapping.describe() == [
        '"Mail" -> email',
        '"Mobile" -> phone',
        '"Tier" -> properties["Customer Tier"]',
        '"Phone" -> (ignored)',
        '"Notes" -> (ignored)',
        '"Street" -> (ignored)',
    ]


def test_explicit_key_matches_case_insensitively() -> None:
    mapping = build_mapping(["E-mail", "Kundennr"], {"kundennr": "external_id"})
    assert mapping.columns == {"E-mail": "email", "Kundennr": "external_id"}


def test_mapping_errors() -> None:
    with pytest.raises(MappingError) as info:
        build_mapping(["Email", "Name"], {"Phone": "phone"})
    assert str(info.value) == (
        "the mapping names column 'Phone', which is not in the input; "
        "the columns are: 'Email', 'Name'"
    )
    with pytest.raises(MappingError) as info:
        build_mapping(["Email", "Tier"], {"Tier": "tier"})
    assert str(info.value) == (
        "unknown target 'tier' for column 'Tier': use one of "
        + ", ".join(CANONICAL_COLUMNS)
        + ", properties.<Name> or ignore"
    )
    with pytest.raises(MappingError, match=r"unknown target 'properties\.' for column 'Tier'"):
        build_mapping(["Email", "Tier"], {"Tier": "properties."})
    with pytest.raises(MappingError) as info:
        build_mapping(["Kontakt", "Telefon"])
    assert str(info.value) == (
        "no column is mapped to email; the columns are: 'Kontakt', 'Telefon' "
        '(map one explicitly, e.g. "E-mail" = "email")'
    )
    with pytest.raises(MappingError) as info:
        build_mapping(["A", "B"], {"A": "email", "B": "email"})
    assert str(info.value) == "columns 'A' and 'B' are both mapped to email"
    with pytest.raises(MappingError) as info:
        build_mapping(["Email", "Tier", "Level"], {"Level": "properties.Tier"})
    assert str(info.value) == "columns 'Tier' and 'Level' are both mapped to properties[\"Tier\"]"


def test_explicit_email_takes_the_column_from_the_automatic_one() -> None:
    mapping = build_mapping(["Email", "Work Email"], {"Work Email": "email"})
    assert mapping.columns == {"Work Email": "email"}
    assert mapping.properties == {"Email": "Email"}


def test_options_validate_region() -> None:
    assert NormalizeOptions(default_region="de").default_region == "DE"
    with pytest.raises(ValueError, match="unknown phone region 'XX'"):
        NormalizeOptions(default_region="XX")


# --------------------------------------------------------------------------- rules


def test_emails_trimmed_lowercased_and_validated() -> None:
    result = normalize(
        [
            {"Email": "  Hans.Mueller@Example.DE "},
            {"Email": "foo@"},
            {"Email": ""},
            {"Email": "   "},
            {"Email": "a b@example.de"},
            {"Email": "a@@example.de"},
            {"Email": "a@example"},
            {"Email": "a@example..de"},
            {"Email": "Ann <ann@example.de>"},
            {"Email": "zoë@bücher.de"},
        ]
    )
    assert records(result.contacts) == [
        {"row": 2, "email": "hans.mueller@example.de"},
        {"row": 11, "email": "zoë@bücher.de"},
    ]
    assert reasons(result) == {
        3: "invalid email 'foo@'",
        4: "missing email",
        5: "missing email",
        6: "invalid email 'a b@example.de'",
        7: "invalid email 'a@@example.de'",
        8: "invalid email 'a@example'",
        9: "invalid email 'a@example..de'",
        10: "invalid email 'Ann <ann@example.de>'",
    }


def test_long_invalid_value_is_shortened_in_the_reason() -> None:
    result = normalize([{"Email": "x" * 100}])
    assert reasons(result) == {2: "invalid email '" + "x" * 60 + "…'"}


def test_phones_to_e164_with_a_region() -> None:
    rows = [
        {"Email": f"p{i}@x.de", "Phone": phone, "Fax": fax}
        for i, (phone, fax) in enumerate(
            [
                ("030 1234567", "030 7654321"),
                ("+49 (0)30 1234567", ""),
                ("0049 89 12345678", ""),
                ("0171/1234567", ""),
                ("+49-171-1234567", ""),
                ("(089) 123 456 78", ""),
                ("+1 415 555 2671", ""),
                ("030 1234567 ext. 12", ""),
                ("12", ""),
                ("call me", "99"),
            ]
        )
    ]
    result = normalize(rows, default_region="DE")
    assert result.contacts["phone"].to_pylist() == [
        "+49301234567",
        "+49301234567",
        "+498912345678",
        "+491711234567",
        "+491711234567",
        "+498912345678",
        "+14155552671",
        "+49301234567;ext=12",
    ]
    assert result.contacts["fax"].to_pylist()[:2] == ["+49307654321", None]
    assert reasons(result) == {
        10: "invalid phone '12'",
        11: "invalid phone 'call me'; invalid fax '99'",
    }


def test_phones_kept_trimmed_without_a_region() -> None:
    result = normalize(
        [{"Email": "a@x.de", "Phone": " 030 / 123 45 "}, {"Email": "b@x.de", "Phone": "12"}]
    )
    assert result.contacts["phone"].to_pylist() == ["030 / 123 45", "12"]
    assert result.rejects.num_rows == 0


def test_names_split_join_and_collapse() -> None:
    result = normalize(
        [
            {"Email": "a@x.de", "Full Name": "  Hans   Peter  Müller ", "First": "", "Last": ""},
            {"Email": "b@x.de", "Full Name": "Müller, Anna", "First": "", "Last": ""},
            {"Email": "c@x.de", "Full Name": "Cher", "First": "", "Last": ""},
            {"Email": "d@x.de", "Full Name": "", "First": " Zoë ", "Last": "Wąsowska  Nowak"},
            {"Email": "e@x.de", "Full Name": "", "First": "", "Last": "Solo"},
            {"Email": "f@x.de", "Full Name": "Dr. Eva Weiß", "First": "Eva", "Last": ""},
            {"Email": "g@x.de", "Full Name": "", "First": "", "Last": ""},
        ],
        {"First": "first_name", "Last": "last_name"},
    )
    assert records(result.contacts.select(["name", "first_name", "last_name"])) == [
        {"name": "Hans Peter Müller", "first_name": "Hans", "last_name": "Peter Müller"},
        {"name": "Müller, Anna", "first_name": "Anna", "last_name": "Müller"},
        {"name": "Cher", "first_name": "Cher", "last_name": None},
        {"name": "Zoë Wąsowska Nowak", "first_name": "Zoë", "last_name": "Wąsowska Nowak"},
        {"name": "Solo", "first_name": None, "last_name": "Solo"},
        {"name": "Dr. Eva Weiß", "first_name": "Eva", "last_name": None},
        {"name": None, "first_name": None, "last_name": None},
    ]


def test_full_name_alone_gives_first_and_last_columns() -> None:
    result = normalize([{"Email": "a@x.de", "Name": "Jan Kowalski"}])
    assert result.contacts.column_names == ["row", "email", "name", "first_name", "last_name"]
    assert records(result.contacts) == [
        {
            "row": 2,
            "email": "a@x.de",
            "name": "Jan Kowalski",
            "first_name": "Jan",
            "last_name": "Kowalski",
        }
    ]


@pytest.mark.parametrize(
    ("text", "dayfirst", "expected"),
    [
        ("1990-05-17", True, "19900517"),
        ("1990-5-7", True, "19900507"),
        ("1990-05-17 00:00:00", True, "19900517"),
        ("1990-05-17T00:00:00Z", True, "19900517"),
        ("19900517", True, "19900517"),
        ("17.05.1990", True, "19900517"),
        ("7.5.1990", True, "19900507"),
        ("03/04/1990", True, "19900403"),
        ("03/04/1990", False, "19900304"),
        ("17/05/1990", True, "19900517"),
        ("05/17/1990", False, "19900517"),
        ("17-05-1990", True, "19900517"),
        ("17 May 1990", True, "19900517"),
        ("3 March 1985", True, "19850303"),
        ("3 Mar 1985", True, "19850303"),
        ("7. Mai 1979", True, "19790507"),
        ("1. März 1980", True, "19800301"),
        ("March 5, 1990", True, "19900305"),
        ("1990/05/17", True, "19900517"),
        ("7.05.1990", True, "19900507"),
        ("17.5.1990", True, "19900517"),
        ("1990-05-17T08:30:00", True, "19900517"),
        ("05-17-1990", False, "19900517"),
    ],
)
def test_birthday_formats(text: str, dayfirst: bool, expected: str) -> None:
    result = normalize([{"Email": "a@x.de", "DOB": f" {text} "}], dayfirst=dayfirst)
    assert reasons(result) == {}
    assert result.contacts["birthday"].to_pylist() == [expected]


@pytest.mark.parametrize(
    ("text", "dayfirst"),
    [
        ("31/02/1990", True),
        ("17/05/1990", False),
        ("1990-13-01", True),
        ("32.13.1980", True),
        ("29.02.1990", True),
        ("1 Smarch 1990", True),
        ("1.1.1850", True),
        ("01.01.2999", True),
        ("yesterday", True),
        ("1990", True),
        ("１９９０-05-17", True),  # full-width digits: not a yyyyMMdd the CRM takes
    ],
)
def test_invalid_birthdays(text: str, dayfirst: bool) -> None:
    result = normalize([{"Email": "a@x.de", "DOB": text}], dayfirst=dayfirst)
    assert result.contacts.num_rows == 0
    assert reasons(result) == {2: f"invalid birthday '{text}'"}


def test_tags_split_trimmed_deduplicated() -> None:
    result = normalize(
        [
            {"Email": "a@x.de", "Tags": "vip; newsletter,vip|VIP | ;,"},
            {"Email": "b@x.de", "Tags": "  "},
            {"Email": "c@x.de", "Tags": "b2b"},
        ]
    )
    assert records(result.contacts.select(["tags"])) == [
        {"tags": ["vip", "newsletter", "VIP"]},
        {"tags": None},
        {"tags": ["b2b"]},
    ]


def test_a_chunk_gives_each_row_what_the_row_alone_gives() -> None:
    """Birthdays of every shape, names, and tags repeated enough to be split once per
    distinct cell (one tag over the limit): the same per row as row by row."""
    birthdays = [
        "1990-05-17", "19900517", "1990/05/17", "17.05.1990", "7.5.1990", "17.5.1990",
        "7.05.1990", "03/04/1990", "03-04-1990", "1990-05-17 00:00:00", "7. Mai 1979",
        "March 5, 1990", "31.02.1990", "１９９０0517", "1990-05-1x", "", "someday",
    ]  # fmt: skip
    tags = ["vip; b2b", "vip; b2b", "lead|vip", "", "x" * 30 + ",vip", "vip; b2b", "b2b"]
    names = ["Kowalski, Jan", "Anna  Müller", "Zoë", "", " Jürgen Weiß ", ", x", "a,b,c"]
    rows = [
        {
            "Email": "bad" if i % 11 == 5 else f"u{i}@x.de",
            "Name": names[i % len(names)],
            "DOB": birthdays[i % len(birthdays)],
            "Tags": tags[i % len(tags)],
            "Notes": 'said "hi"\nbye' if i % 3 else "ünïcode ✓",
        }
        for i in range(3 * len(birthdays))
    ]
    options = {"max_length": 20}
    whole = normalize(rows, **options)
    alone = [normalize([row], **options) for row in rows]
    assert records(whole.contacts) == [
        {**r, "row": i + 2} for i, one in enumerate(alone) for r in records(one.contacts)
    ]
    assert [(line - 2, reason) for line, reason in reasons(whole).items()] == [
        (i, reason) for i, one in enumerate(alone) for reason in reasons(one).values()
    ]
    assert [json.loads(v) for v in whole.rejects["values"].to_pylist()] == [
        rows[line - 2] for line in whole.rejects["line"].to_pylist()
    ]


def test_text_trimmed_empty_is_na_and_properties_hold_non_empty_values() -> None:
    result = normalize(
        [
            {
                "Email": "a@x.de",
                "Company": "  ACME  GmbH ",
                "City": " Köln",
                "Country": "",
                "Loyalty Tier": " Gold ",
                "Source": "",
            },
            {
                "Email": "b@x.de",
                "Company": "",
                "City": "",
                "Country": "DE",
                "Loyalty Tier": "",
                "Source": "",
            },
        ]
    )
    assert result.contacts.column_names == [
        "row",
        "email",
        "company",
        "city",
        "country",
        "properties",
    ]
    assert records(result.contacts) == [
        {
            "row": 2,
            "email": "a@x.de",
            "company": "ACME  GmbH",
            "city": "Köln",
            "country": None,
            "properties": {"Loyalty Tier": "Gold"},
        },
        {
            "row": 3,
            "email": "b@x.de",
            "company": None,
            "city": None,
            "country": "DE",
            "properties": {},
        },
    ]
    assert result.contacts.schema == load_frame_schema(
        build_mapping(["Email", "Company", "City", "Country", "Loyalty Tier", "Source"])
    )


def test_values_over_max_length_are_rejected() -> None:
    result = normalize(
        [
            {"Email": "a@x.de", "Company": "C" * 300, "Tier": "ok", "Tags": "a"},
            {"Email": "b@x.de", "Company": "C" * 255, "Tier": "T" * 256, "Tags": "t" * 256},
            {"Email": "c@x.de", "Company": "C" * 20, "Tier": "", "Tags": ""},
        ]
    )
    assert reasons(result) == {
        2: "field 'company' is 300 characters, the limit is 255",
        3: "field 'tags' has a tag of 256 characters, the limit is 255; "
        "field 'Tier' is 256 characters, the limit is 255",
    }
    short = normalize([{"Email": "a@x.de", "City": "Hamburg"}], max_length=6)
    assert reasons(short) == {2: "field 'city' is 7 characters, the limit is 6"}


def test_several_problems_joined_and_original_values_kept() -> None:
    rows = [
        {"E-mail": " kurt@ ", "Phone": "123", "DOB": "32.13.1980", "Notes": "x"},
        {"E-mail": "ok@x.de", "Phone": "030 1234567", "DOB": "", "Notes": ""},
    ]
    result = normalize(rows, {"Notes": "ignore"}, default_region="DE")
    assert result.rejects.schema == pa.schema(
        [("line", pa.int64()), ("reason", pa.string()), ("values", pa.string())]
    )
    assert result.rejects["line"].to_pylist() == [2]
    assert result.rejects["reason"].to_pylist() == [
        "invalid email 'kurt@'; invalid phone '123'; invalid birthday '32.13.1980'"
    ]
    assert json.loads(result.rejects["values"][0].as_py()) == rows[0]
    assert records(result.contacts) == [
        {"row": 3, "email": "ok@x.de", "phone": "+49301234567", "birthday": None}
    ]


def test_chunk_index_and_line_numbers_are_respected() -> None:
    frame = frame_of([{"Email": "a@x.de"}, {"Email": "bad"}, {"Email": "c@x.de"}])
    frame.index = [10, 11, 12]
    mapping = build_mapping(["Email"])
    result = normalize_chunk(frame, [40, 42, 45], mapping, NormalizeOptions())
    assert result.contacts["row"].to_pylist() == [40, 45]
    assert result.rejects["line"].to_pylist() == [42]
    with pytest.raises(ValueError, match="2 line numbers for 3 rows"):
        normalize_chunk(frame, [1, 2], mapping, NormalizeOptions())


def test_arrow_table_in_any_string_type_gives_the_frame_result() -> None:
    rows = [
        {"Email": " A@x.de", "Name": "Müller, Anna", "DOB": "7. Mai 1979", "Tags": "a;b;a"},
        {"Email": "bad", "Name": "", "DOB": "", "Tags": ""},
        {"Email": "c@x.de", "Name": "Jan\u2028 Kowalski", "DOB": "1990-5-7", "Tags": "b|a|b"},
        {"Email": "d@x.de", "Name": "", "DOB": "31.02.1990", "Tags": "x"},
    ]
    mapping = build_mapping(list(rows[0]))
    lines = [2, 3, 5, 6]
    expected = normalize_chunk(frame_of(rows), lines, mapping)
    assert records(expected.contacts) == [
        {
            "row": 2,
            "email": "a@x.de",
            "name": "Müller, Anna",
            "first_name": "Anna",
            "last_name": "Müller",
            "birthday": "19790507",
            "tags": ["a", "b"],
        },
        {
            "row": 5,
            "email": "c@x.de",
            "name": "Jan Kowalski",
            "first_name": "Jan",
            "last_name": "Kowalski",
            "birthday": "19900507",
            "tags": ["b", "a"],
        },
    ]
    assert reasons(expected) == {3: "invalid email 'bad'", 6: "invalid birthday '31.02.1990'"}
    for kind in (pa.string(), pa.large_string(), pa.string_view()):
        columns = {
            h: pa.chunked_array([[r[h] for r in rows[:1]], [r[h] for r in rows[1:]]], kind)
            for h in rows[0]
        }
        result = normalize_chunk(pa.table(columns), np.array(lines), mapping)
        assert result.contacts.equals(expected.contacts)
        assert result.rejects.equals(expected.rejects)


def test_whitespace_is_what_python_calls_whitespace() -> None:
    assert set(SPACE_CHARS) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    result = normalize(
        [
            {"Email": "a\xa0b@x.de", "Name": "x"},
            {"Email": "\u3000c@x.de\u2029", "Name": "Ann\u3000\u3000Lee\x85Smith"},
        ]
    )
    assert reasons(result) == {2: "invalid email 'a\xa0b@x.de'"}
    assert records(result.contacts.select(["email", "first_name", "last_name"])) == [
        {"email": "c@x.de", "first_name": "Ann", "last_name": "Lee Smith"}
    ]


def test_empty_chunk() -> None:
    frame = pd.DataFrame({"Email": pd.Series([], dtype="str"), "Tier": pd.Series([], dtype="str")})
    result = normalize_chunk(frame, [], build_mapping(["Email", "Tier"]), NormalizeOptions())
    assert result.contacts.column_names == ["row", "email", "properties"]
    assert result.contacts.num_rows == 0 and result.rejects.num_rows == 0


# --------------------------------------------------------------------------- duplicates


def test_email_keys() -> None:
    frame = frame_of([{"Mail": " A@X.de"}, {"Mail": "bad"}, {"Mail": ""}, {"Mail": "a@x.DE "}])
    keys = email_keys(frame, build_mapping(["Mail"]))
    assert [None if pd.isna(k) else k for k in keys] == ["a@x.de", None, None, "a@x.de"]


def test_find_duplicates_policies() -> None:
    emails = ["a@x.de", "b@x.de", None, "A@x.de ", "c@x.de", "a@x.de", "b@x.de", ""]
    lines = [2, 3, 5, 6, 7, 9, 10, 11]
    assert find_duplicates(emails, lines, "last") == {2: 9, 6: 9, 3: 10}
    assert find_duplicates(emails, lines, "reject") == {6: 2, 9: 2, 10: 3}
    assert superseded_lines(pd.Series(emails, dtype="str"), lines) == {2: 9, 6: 9, 3: 10}
    assert find_duplicates([], [], "last") == {}
    with pytest.raises(ValueError, match="policy must be 'last' or 'reject'"):
        find_duplicates(emails, lines, "first")  # type: ignore[arg-type]


def test_find_duplicates_scales_with_arrays() -> None:
    n = 200_000
    emails = pd.Series([f"u{i % 50_000}@x.de" for i in range(n)], dtype="str")
    lines = np.arange(2, n + 2)
    last = find_duplicates(emails, lines, "last")
    assert len(last) == n - 50_000
    assert last[2] == 150_002 and last[50_002] == 150_002
    first = find_duplicates(emails, lines, "reject")
    assert len(first) == n - 50_000
    assert first[150_002] == 2


# --------------------------------------------------------------------------- sample files


def load(path: Path, mapping_file: Path | None = None, **options: Any):
    dialect = sniff(path)
    explicit = None
    if mapping_file is not None:
        config = tomllib.loads(mapping_file.read_text(encoding="utf-8"))
        explicit = config["mapping"]
        options = {
            "default_region": config.get("default_region"),
            "dayfirst": config.get("dayfirst", True),
            **options,
        }
    mapping = build_mapping(read_header(path, dialect), explicit)
    contacts, rejects, records_seen = [], {}, 0
    for chunk in read_chunks(path, dialect, chunk_rows=25):
        records_seen += chunk.table.num_rows + len(chunk.rejects)
        for reject in chunk.rejects:
            rejects[reject.line] = reject.reason
        result = normalize_chunk(chunk.table, chunk.lines, mapping, NormalizeOptions(**options))
        assert len(result.contacts) + len(result.rejects) == chunk.table.num_rows
        contacts.append(result.contacts)
        rejects.update(reasons(result))
    frame = pd.DataFrame(records(pa.concat_tables(contacts)))
    return dialect, mapping, frame, rejects, records_seen


def readme_table(title: str) -> list[list[str]]:
    text = (SAMPLES / "README.md").read_text(encoding="utf-8")
    section = text.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\| \d+ \|", line)]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_clean_sample_loads_completely() -> None:
    path = SAMPLES / "contacts_clean.csv"
    dialect, mapping, contacts, rejects, seen = load(path, default_region="DE")
    assert (dialect.encoding, dialect.delimiter, dialect.bom) == ("utf-8", ",", False)
    assert mapping.properties == {"Loyalty Tier": "Loyalty Tier"}
    assert mapping.ignored == ()
    assert set(mapping.columns.values()) == {
        "first_name",
        "last_name",
        "email",
        "phone",
        "company",
        "street",
        "zip_code",
        "city",
        "country",
        "birthday",
        "tags",
    }
    assert rejects == {}
    assert seen == len(contacts) == 200
    assert contacts["row"].tolist() == list(range(2, 202))
    assert contacts["email"].is_unique
    assert find_duplicates(contacts["email"], contacts["row"], "last") == {}
    assert contacts["phone"].dropna().str.fullmatch(r"\+\d{8,15}").all()
    assert contacts["birthday"].dropna().str.fullmatch(r"(19|20)\d{6}").all()


def test_messy_sample_rejects_and_duplicates_match_the_readme() -> None:
    path = SAMPLES / "contacts_messy.csv"
    dialect, mapping, contacts, rejects, seen = load(path, SAMPLES / "mappings" / "messy.toml")
    assert (dialect.encoding, dialect.delimiter, dialect.bom) == ("cp1252", ";", False)
    assert mapping.ignored == ("Notes",)
    assert mapping.properties == {"Customer Tier": "Customer Tier"}

    expected = {int(line): reason for line, reason, _ in readme_table("Rejected lines")}
    assert rejects == expected
    assert seen == 120
    assert len(contacts) + len(rejects) == 120

    duplicates = readme_table("Duplicate emails")
    last = {int(r[0]): int(r[2]) for r in duplicates if r[2] != "-"}
    first = {int(r[0]): int(r[3]) for r in duplicates if r[3] != "-"}
    assert find_duplicates(contacts["email"], contacts["row"], "last") == last
    assert find_duplicates(contacts["email"], contacts["row"], "reject") == first
    by_line = dict(zip(contacts["row"], contacts["email"], strict=True))
    assert all(by_line[int(r[0])] == r[1] for r in duplicates)

    skipped = {int(r[0]) for r in readme_table("Skipped lines (blank, not rejects)")}
    assert not skipped & (set(contacts["row"]) | set(rejects))

    hans = records(contacts[contacts["email"] == "hans.mueller@example.de"])[0]
    assert {k: hans[k] for k in ("name", "first_name", "last_name", "phone", "birthday")} == {
        "name": "Müller, Hans",
        "first_name": "Hans",
        "last_name": "Müller",
        "phone": "+49301234567",
        "birthday": "19850312",
    }
    assert hans["tags"] == ["VIP", "Newsletter"]
    assert hans["properties"] == {"Customer Tier": "Gold"}
    kaethe = records(contacts[contacts["email"] == "kaethe.kollwitz@example.de"])[0]
    assert kaethe["street"] == "Hinterhof 2\r\nAufgang B"
    cher = records(contacts[contacts["email"] == "cher@example.com"])[0]
    assert (cher["first_name"], cher["last_name"], cher["tags"]) == (
        "Cher",
        None,
        ["vip", "newsletter", "VIP"],
    )
    assert contacts["phone"].dropna().str.fullmatch(r"\+\d{8,15}").all()
