"""Streaming CSV input: encodings, delimiters, physical line numbers, rejects, file errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etl.extract.csv_input import (
    CsvDialect,
    InputFileError,
    InputReject,
    read_chunks,
    read_header,
    sniff,
)


def write(tmp_path: Path, data: bytes, name: str = "input.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path, chunk_rows: int = 10_000) -> tuple[list[dict], list[int], list]:
    dialect = sniff(path)
    rows: list[dict] = []
    lines: list[int] = []
    rejects: list[InputReject] = []
    for chunk in read_chunks(path, dialect, chunk_rows=chunk_rows):
        assert len(chunk.frame) == len(chunk.lines)
        rows += chunk.frame.to_dict("records")
        lines += chunk.lines.tolist()
        rejects += chunk.rejects
    return rows, lines, rejects


# --------------------------------------------------------------------------- encodings


def test_utf8_without_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "Email,Name\nzoe@example.pl,Zoë Wąsowska\n".encode())
    assert sniff(path) == CsvDialect(encoding="utf-8", delimiter=",", bom=False)
    rows, lines, rejects = read_all(path)
    assert rows == [{"Email": "zoe@example.pl", "Name": "Zoë Wąsowska"}]
    assert lines == [2]
    assert rejects == []


def test_utf8_with_bom_keeps_the_bom_out_of_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + "Email;Name\r\na@b.de;Jürgen\r\n".encode())
    dialect = sniff(path)
    assert dialect == CsvDialect(encoding="utf-8", delimiter=";", bom=True)
    assert read_header(path, dialect) == ["Email", "Name"]
    rows, lines, _ = read_all(path)
    assert rows == [{"Email": "a@b.de", "Name": "Jürgen"}]
    assert lines == [2]


def test_cp1252_with_latin1_for_undefined_bytes(tmp_path: Path) -> None:
    data = (
        "Email;Name;Note\r\na@b.de;Müller-Weiß;5 €\r\n".encode("cp1252")
        + b"c@d.de;Jos\xe9;x\x81y\r\n"
    )
    path = write(tmp_path, data)
    assert sniff(path) == CsvDialect(encoding="cp1252", delimiter=";", bom=False)
    rows, lines, rejects = read_all(path)
    assert rows == [
        {"Email": "a@b.de", "Name": "Müller-Weiß", "Note": "5 €"},
        {"Email": "c@d.de", "Name": "José", "Note": "x\x81y"},
    ]
    assert lines == [2, 3]
    assert rejects == []


def test_undecodable_bytes_in_a_utf8_file_are_rejected_with_their_line(tmp_path: Path) -> None:
    data = (
        b"Email,Name\n" + "a@b.de,Zoë\n".encode() + b"c@d.de,Jos\xe9\n" + "e@f.de,Łucja\n".encode()
    )
    path = write(tmp_path, data)
    assert sniff(path).encoding == "utf-8"
    rows, lines, rejects = read_all(path)
    assert rows == [{"Email": "a@b.de", "Name": "Zoë"}, {"Email": "e@f.de", "Name": "Łucja"}]
    assert lines == [2, 4]
    assert rejects == [InputReject(3, "undecodable bytes (not UTF-8)", "c@d.de,José")]


def test_undecodable_bytes_after_the_sniffed_head(tmp_path: Path) -> None:
    good = "".join(f"user{i}@example.de,Zoë {i}\n" for i in range(4000)).encode()
    assert len(good) > 64 * 1024
    path = write(tmp_path, b"Email,Name\n" + good + b"bad@example.de,M\xfcller\n")
    assert sniff(path) == CsvDialect(encoding="utf-8", delimiter=",", bom=False)
    rows, lines, rejects = read_all(path, chunk_rows=1000)
    assert len(rows) == 4000
    assert lines == list(range(2, 4002))
    assert rejects == [InputReject(4002, "undecodable bytes (not UTF-8)", "bad@example.de,Müller")]


# --------------------------------------------------------------------------- delimiters


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters(tmp_path: Path, delimiter: str) -> None:
    d = delimiter
    text = (
        f"Email{d}Name{d}Note\n"
        f'a@b.de{d}Anna{d}"x, y; z | w\tv"\n'
        f"c@d.de{d}Carl{d}\n"
        f"e@f.de{d}Eva{d}plain\n"
    )
    path = write(tmp_path, text.encode())
    assert sniff(path) == CsvDialect(encoding="utf-8", delimiter=delimiter, bom=False)
    rows, lines, rejects = read_all(path)
    assert rows == [
        {"Email": "a@b.de", "Name": "Anna", "Note": "x, y; z | w\tv"},
        {"Email": "c@d.de", "Name": "Carl", "Note": ""},
        {"Email": "e@f.de", "Name": "Eva", "Note": "plain"},
    ]
    assert lines == [2, 3, 4]
    assert rejects == []


def test_semicolon_wins_over_unquoted_commas_in_cells(tmp_path: Path) -> None:
    text = "Name;Email;Tags\nMüller, Hans;h@m.de;a,b,c\nWeiß, Eva;e@w.de;x\nOtto;o@t.de;y,z\n"
    path = write(tmp_path, text.encode())
    assert sniff(path).delimiter == ";"


def test_single_column_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"Email\na@b.de\nc@d.de\n")
    assert sniff(path).delimiter == ","
    rows, lines, _ = read_all(path)
    assert rows == [{"Email": "a@b.de"}, {"Email": "c@d.de"}]
    assert lines == [2, 3]


# --------------------------------------------------------------------------- lines


def test_quoted_newlines_give_physical_line_numbers(tmp_path: Path) -> None:
    text = (
        "Email,Note\r\n"
        'a@b.de,"line one\r\nline two\r\nline three"\r\n'
        "c@d.de,plain\r\n"
        '"e@f.de","x\ny"\r\n'
        "g@h.de,last\r\n"
    )
    path = write(tmp_path, text.encode())
    rows, lines, _ = read_all(path)
    assert lines == [2, 5, 6, 8]
    assert rows[0]["Note"] == "line one\r\nline two\r\nline three"
    assert rows[2] == {"Email": "e@f.de", "Note": "x\ny"}


def test_mixed_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, b"Email,Name\r\na@b.de,A\nc@d.de,C\re@f.de,E\r\ng@h.de,G")
    rows, lines, rejects = read_all(path)
    assert rows == [
        {"Email": "a@b.de", "Name": "A"},
        {"Email": "c@d.de", "Name": "C"},
        {"Email": "e@f.de", "Name": "E"},
        {"Email": "g@h.de", "Name": "G"},
    ]
    assert lines == [2, 3, 4, 5]
    assert rejects == []


def test_blank_lines_and_rows_of_empty_cells_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, b"Email,Name\n\na@b.de,A\n,\n   \n\r\nc@d.de,C\n\n\n")
    rows, lines, rejects = read_all(path)
    assert [r["Email"] for r in rows] == ["a@b.de", "c@d.de"]
    assert lines == [3, 7]
    assert rejects == []


def test_ragged_rows_are_rejected_with_their_text(tmp_path: Path) -> None:
    text = "Email;Name;City\r\na@b.de;A;X;extra;more\r\nc@d.de;C\r\ne@f.de;E;Y;;\r\ng@h.de;G;Z\r\n"
    path = write(tmp_path, text.encode())
    rows, lines, rejects = read_all(path)
    assert rejects == [
        InputReject(2, "row has 5 fields, the header has 3", "a@b.de;A;X;extra;more"),
        InputReject(3, "row has 2 fields, the header has 3", "c@d.de;C"),
    ]
    # trailing empty cells (as spreadsheets write them) are not a reason to reject
    assert rows == [
        {"Email": "e@f.de", "Name": "E", "City": "Y"},
        {"Email": "g@h.de", "Name": "G", "City": "Z"},
    ]
    assert lines == [4, 5]


def test_unclosed_quote_is_one_reject_spanning_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, b'Email,Name\na@b.de,A\nc@d.de,"C\ne@f.de,E\ng@h.de,G\n')
    rows, lines, rejects = read_all(path)
    assert rows == [{"Email": "a@b.de", "Name": "A"}]
    assert lines == [2]
    assert rejects == [
        InputReject(
            3, "unclosed quote (the record runs over lines 3-5)", 'c@d.de,"C\ne@f.de,E\ng@h.de,G'
        )
    ]


def test_stray_quote_inside_a_cell_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, b"Email,Height\na@b.de,5'11\"\n")
    rows, _, rejects = read_all(path)
    assert rows == [{"Email": "a@b.de", "Height": "5'11\""}]
    assert rejects == []


def test_nul_bytes_are_rejected(tmp_path: Path) -> None:
    body = b"".join(b"user%d@example.de,Name %d\n" % (i, i) for i in range(20))
    path = write(tmp_path, b"Email,Name\n" + body + b"x@y.de,Nu\x00ll\n" + b"z@y.de,Zed\n")
    rows, lines, rejects = read_all(path)
    assert rejects == [InputReject(22, "row contains NUL bytes", "x@y.de,Nu\x00ll")]
    assert lines == [*range(2, 22), 23]
    assert rows[-1] == {"Email": "z@y.de", "Name": "Zed"}


def test_header_names_empty_and_duplicate(tmp_path: Path) -> None:
    path = write(tmp_path, b"Email, ,Email,Name,,Email (2),Email\na,b,c,d,e,f,g\n")
    dialect = sniff(path)
    assert read_header(path, dialect) == [
        "Email",
        "column 2",
        "Email (3)",
        "Name",
        "column 5",
        "Email (2)",
        "Email (4)",
    ]
    rows, _, _ = read_all(path)
    assert rows == [
        {
            "Email": "a",
            "column 2": "b",
            "Email (3)": "c",
            "Name": "d",
            "column 5": "e",
            "Email (2)": "f",
            "Email (4)": "g",
        }
    ]


def test_frame_columns_are_strings_and_cells_unstripped(tmp_path: Path) -> None:
    path = write(tmp_path, b"Email,Name\n  a@b.de ,\n")
    chunk = next(read_chunks(path, sniff(path)))
    assert list(chunk.frame.columns) == ["Email", "Name"]
    assert all(isinstance(t, pd.StringDtype) for t in chunk.frame.dtypes)
    assert chunk.frame.to_dict("records") == [{"Email": "  a@b.de ", "Name": ""}]


def test_chunking_keeps_lines_across_chunk_boundaries(tmp_path: Path) -> None:
    records = []
    expected_lines = []
    line = 2
    for i in range(25):
        if i % 3 == 0:
            records.append(f'u{i}@x.de,"two\nlines"\n')
            expected_lines.append(line)
            line += 2
        elif i == 10:
            records.append(f"u{i}@x.de,ragged,row\n")
            line += 1
        else:
            records.append(f"u{i}@x.de,one\n")
            expected_lines.append(line)
            line += 1
    path = write(tmp_path, ("Email,Note\n" + "".join(records)).encode())
    chunks = list(read_chunks(path, sniff(path), chunk_rows=4))
    assert [len(c.frame) + len(c.rejects) for c in chunks] == [4, 4, 4, 4, 4, 4, 1]
    assert [line for c in chunks for line in c.lines.tolist()] == expected_lines
    assert [r.line for c in chunks for r in c.rejects] == [16]
    emails = [e for c in chunks for e in c.frame["Email"]]
    assert emails == [f"u{i}@x.de" for i in range(25) if i != 10]


# --------------------------------------------------------------------------- file errors


def error_of(path: Path) -> str:
    with pytest.raises(InputFileError) as info:
        dialect = sniff(path)
        read_header(path, dialect)
        list(read_chunks(path, dialect))
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert error_of(path) == f"{path}: file not found"


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    assert error_of(path) == f"{path}: the file is empty (0 bytes)"


@pytest.mark.parametrize("data", [b"   \r\n\n\t\n", b"\xef\xbb\xbf\n\n"])
def test_whitespace_only_file(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    assert error_of(path) == f"{path}: the file is empty (only whitespace)"


@pytest.mark.parametrize("data", [b"Email,Name\n", b"Email,Name", b"Email,Name\r\n\r\n,\n  \n"])
def test_header_only_file(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    assert error_of(path) == f"{path}: the file has a header but no data rows"
    with pytest.raises(InputFileError, match="has a header but no data rows"):
        list(read_chunks(path, sniff(path)))


def test_png_renamed_csv(tmp_path: Path) -> None:
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert error_of(path) == (
        f"{path}: not a CSV text file, it looks like a PNG image; export the sheet as CSV"
    )


def test_xlsx_renamed_csv(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    assert error_of(path) == (
        f"{path}: not a CSV text file, it looks like a Excel workbook (.xlsx); "
        "export the sheet as CSV"
    )


def test_utf16_with_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "Email,Name\na@b.de,A\n".encode("utf-16"))
    assert error_of(path) == f"{path}: the file is UTF-16 encoded; save it as CSV UTF-8"


def test_nul_heavy_content_is_binary(tmp_path: Path) -> None:
    path = write(tmp_path, "Email,Name\na@b.de,A\n".encode("utf-16-le"))
    message = error_of(path)
    assert message.startswith(f"{path}: not a CSV text file (binary content: ")
    assert "NUL bytes" in message


def test_random_bytes_are_binary(tmp_path: Path) -> None:
    import random

    noise = random.Random(7).randbytes(4096)
    path = write(tmp_path, b"GARBAGE" + noise)
    assert error_of(path).startswith(f"{path}: not a CSV text file (binary content: ")


# --------------------------------------------------------------------------- fast path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_data").glob("*.csv")) + sorted(
    (ROOT / "sample_data" / "bad").glob("*.csv")
)


def outcome(path: Path, *, fast: bool, chunk_rows: int, block_bytes: int = 1 << 22) -> object:
    """Everything a caller sees of a read: chunks (rows, lines, rejects) or the file error."""
    try:
        dialect = sniff(path)
        chunks = list(
            read_chunks(path, dialect, chunk_rows=chunk_rows, fast=fast, block_bytes=block_bytes)
        )
    except InputFileError as exc:
        return str(exc)
    for chunk in chunks:
        assert chunk.table.schema == pa.schema([(n, pa.string()) for n in chunk.table.column_names])
        assert chunk.lines.dtype == np.int64
        assert chunk.frame.to_dict("records") == chunk.table.to_pylist()
    return [(c.table.to_pylist(), c.lines.tolist(), c.rejects) for c in chunks]


def assert_same_either_way(
    path: Path, chunk_rows: int = 10_000, block_sizes: tuple[int, ...] = (1 << 22, 300, 64, 1)
) -> set[str]:
    """The fast path gives what the exact reader gives, at any block size; returns readers."""
    exact = outcome(path, fast=False, chunk_rows=chunk_rows)
    for block_bytes in block_sizes:
        assert outcome(path, fast=True, chunk_rows=chunk_rows, block_bytes=block_bytes) == exact
    if isinstance(exact, str):
        return set()
    return {c.reader for c in read_chunks(path, sniff(path), chunk_rows=chunk_rows)}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk_rows", [7, 10_000])
def test_fast_path_matches_exact_reader_on_sample_files(path: Path, chunk_rows: int) -> None:
    assert_same_either_way(path, chunk_rows)


def test_a_well_formed_file_takes_the_fast_path() -> None:
    path = ROOT / "sample_data" / "contacts_clean.csv"
    chunks = list(read_chunks(path, sniff(path), chunk_rows=50))
    assert {c.reader for c in chunks} == {"arrow"}
    assert sum(c.table.num_rows for c in chunks) == 200
    assert chunks[0].lines.tolist()[:3] == [2, 3, 4]


def test_ragged_rows_stay_on_the_fast_path(tmp_path: Path) -> None:
    text = "Email;Name;City\r\na@b.de;A;X;extra\r\nc@d.de;C\r\ne@f.de;E;Y;;\r\ng@h.de;G;Z\r\n"
    path = write(tmp_path, text.encode())
    assert assert_same_either_way(path) == {"arrow"}
    _, lines, rejects = read_all(path)
    assert [r.line for r in rejects] == [2, 3]
    assert lines == [4, 5]


def generated(kind: str) -> bytes:
    """Files with the oddities the fast path must read exactly as the exact reader does."""
    notes = ("plain", '"two\r\nlines"', '"semi; colon"', '"say ""hi"""', "", '"a\nb\r\nc"')
    rows = [f"u{i}@x.de;Zoë {i};{notes[i % len(notes)]}" for i in range(40)]
    if kind == "quoted newlines, CRLF":
        return ("Email;Name;Note\r\n" + "\r\n".join(rows) + "\r\n").encode()
    if kind == "no newline at the end":
        return ("Email;Name;Note\n" + "\n".join(rows)).encode()
    if kind == "cp1252":
        text = "Email;Name;Note\r\n" + "\r\n".join(r.replace("ë", "é") + " 5 €" for r in rows)
        return text.encode("cp1252") + b"\r\nz@x.de;x\x81y;\x9d\r\n"
    if kind == "BOM":
        return b"\xef\xbb\xbf" + ("Email;Name;Note\r\n" + "\r\n".join(rows)).encode()
    if kind == "trailing empty cells":
        return ("Email;Name;Note\n" + "".join(f"{r};;\n" for r in rows[:10])).encode()
    if kind == "blank lines and blank rows":
        blank = "\n;;\n \t\n\u3000;\x1c;\xa0 \n\u2007\n"  # str.isspace, not only ASCII
        return ("Email;Name;Note\n" + "\n\n".join(rows[:10]) + blank + rows[11]).encode()
    if kind == "lone CR line ends":
        return ("Email;Name;Note\r" + "\r".join(rows[:12]) + "\n" + rows[13]).encode()
    if kind == "NUL and undecodable bytes":
        body = "\n".join(rows[:10]).encode()
        return b"Email;Name;Note\n" + body + b"\nn@x.de;N\x00;\nb@x.de;M\xfcller;\n" + body
    if kind == "unclosed quote":
        return (
            "Email;Name;Note\n" + "\n".join(rows[:10]) + '\nq@x.de;Q;"open\n' + rows[3]
        ).encode()
    if kind == "stray quotes":
        return ("Email;Name;Note\n" + "\n".join(rows[:8]) + '\nq@x.de;5\'11";x"y\n').encode()
    if kind == "quote after a quoted field":
        return ("Email;Name;Note\n" + "\n".join(rows[:8]) + '\nq@x.de;"a\nb"c";"d"\n').encode()
    if kind == "header over two lines":
        return ('Email;"Na\nme";Note\n' + "\n".join(rows[:8])).encode()
    raise AssertionError(kind)


KINDS = [
    "quoted newlines, CRLF",
    "no newline at the end",
    "cp1252",
    "BOM",
    "trailing empty cells",
    "blank lines and blank rows",
    "lone CR line ends",
    "NUL and undecodable bytes",
    "unclosed quote",
    "stray quotes",
    "quote after a quoted field",
    "header over two lines",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk_rows", [3, 10_000])
def test_fast_path_matches_exact_reader_on_odd_files(
    tmp_path: Path, kind: str, chunk_rows: int
) -> None:
    path = write(tmp_path, generated(kind))
    readers = assert_same_either_way(path, chunk_rows)
    if kind in {"quoted newlines, CRLF", "no newline at the end", "cp1252", "BOM"}:
        assert readers == {"arrow"}


def test_fast_path_lines_and_rejects_in_a_big_file(tmp_path: Path) -> None:
    notes = ("", '"line one\r\nline two"', "x", '"a;b"')
    body = "".join(
        f"u{i}@x.de;Name {i};{notes[i % 4]}\r\n" if i % 997 else f"u{i}@x.de;ragged;row;more\r\n"
        for i in range(20_000)
    )
    path = write(tmp_path, ("Email;Name;Note\r\n" + body).encode())
    assert assert_same_either_way(path, 1000, block_sizes=(1 << 22, 50_000)) == {"arrow"}
    rows, _, rejects = read_all(path, chunk_rows=1000)
    assert len(rows) + len(rejects) == 20_000
    assert rejects[1] == InputReject(
        997 + 997 // 4 + 2, "row has 4 fields, the header has 3", "u997@x.de;ragged;row;more"
    )
