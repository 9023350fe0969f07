"""Streaming reading of spreadsheet CSV exports: encoding, delimiter, physical line numbers.

Real exports are messy: UTF-8 with or without a BOM or Windows-1252, comma/semicolon/tab/pipe
separated, quoted cells spanning lines, ragged rows, stray NUL or undecodable bytes. Whole-file
problems raise :class:`InputFileError`; a bad record becomes an :class:`InputReject` with its
physical line number and never stops the read. Memory is bounded by ``chunk_rows``.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

HEAD_BYTES = 64 * 1024
SNIFF_RECORDS = 200
DELIMITERS = (",", ";", "\t", "|")
QUOTE = '"'

_Record = tuple[int, list[str] | None, str | None]  # start line, fields, csv error
_CP1252_ERRORS = "crm_etl_cp1252_latin1"
_SURROGATES = re.compile("[\udc80-\udcff]")
_WHITESPACE = b" \t\r\n\x0b\x0c"
_BINARY_CONTROL = bytes([*range(0, 9), 0x0E, 0x0F, *range(0x10, 0x1A), *range(0x1C, 0x20)])
_NOT_CONTROL = bytes(range(256)).translate(None, _BINARY_CONTROL)
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"PK\x05\x06", "ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Excel/Office document (.xls)"),
    (b"%PDF-", "PDF document"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\x7fELF", "executable"),
    (b"MZ", "Windows executable"),
)


def _cp1252_latin1(error: UnicodeError) -> tuple[str, int]:
    """cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: read those as latin-1."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error(_CP1252_ERRORS, _cp1252_latin1)


class InputFileError(ValueError):
    """The input file as a whole cannot be read as CSV; the message names the file."""


@dataclass(frozen=True)
class CsvDialect:
    encoding: str  # "utf-8" or "cp1252"
    delimiter: str
    bom: bool


@dataclass(frozen=True)
class InputReject:
    """A record that cannot become a row: ``line`` is where it starts, ``raw`` its text."""

    line: int
    reason: str
    raw: str


@dataclass
class CsvChunk:
    """Up to ``chunk_rows`` records: ``frame`` holds the good ones (one ``str`` column per
    header name, "" for an empty cell), ``lines[i]`` the physical line where row ``i`` starts."""

    frame: pd.DataFrame
    lines: list[int]
    rejects: list[InputReject] = field(default_factory=list)


# --------------------------------------------------------------------------- sniffing


def sniff(path: Path) -> CsvDialect:
    """Encoding and delimiter from the first 64 KiB; raises InputFileError for unusable files."""
    path = Path(path)
    head, size = _read_head(path)
    bom = head.startswith(codecs.BOM_UTF8)
    body = head[len(codecs.BOM_UTF8) :] if bom else head
    if not body.strip(_WHITESPACE) and _only_whitespace(path, len(head)):
        detail = "0 bytes" if size == 0 else "only whitespace"
        raise InputFileError(f"{path}: the file is empty ({detail})")
    _reject_binary(path, head)
    truncated = size > len(head)
    encoding = "utf-8" if bom or _looks_utf8(body, final=not truncated) else "cp1252"
    text = _decode(body, encoding)
    return CsvDialect(encoding=encoding, delimiter=_sniff_delimiter(text, truncated), bom=bom)


def _read_head(path: Path) -> tuple[bytes, int]:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise InputFileError(f"{path}: is a directory, not a CSV file")
        with path.open("rb") as f:
            return f.read(HEAD_BYTES), size
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except PermissionError:
        raise InputFileError(f"{path}: permission denied") from None


def _only_whitespace(path: Path, offset: int) -> bool:
    with path.open("rb") as f:
        f.seek(offset)
        while block := f.read(1 << 20):
            if block.strip(_WHITESPACE):
                return False
    return True


def _reject_binary(path: Path, head: bytes) -> None:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            if kind == "ZIP archive" and (b"[Content_Types].xml" in head or b"xl/" in head):
                kind = "Excel workbook (.xlsx)"
            raise InputFileError(
                f"{path}: not a CSV text file, it looks like a {kind}; export the sheet as CSV"
            )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputFileError(f"{path}: the file is UTF-16 encoded; save it as CSV UTF-8")
    nul = head.count(b"\x00") / len(head)
    control = len(head.translate(None, _NOT_CONTROL)) / len(head)
    if nul > 0.05 or control > 0.10:
        raise InputFileError(
            f"{path}: not a CSV text file (binary content: {nul:.0%} NUL bytes and "
            f"{control:.0%} control bytes in the first 64 KiB)"
        )
    if not _looks_utf8(head, final=False):
        invalid = len(_SURROGATES.findall(head.decode("utf-8", "surrogateescape")))
        if invalid / len(head) > 0.30:
            raise InputFileError(
                f"{path}: not a CSV text file (binary content: {invalid / len(head):.0%} of "
                "the first 64 KiB is neither UTF-8 nor plain text)"
            )


def _looks_utf8(data: bytes, *, final: bool) -> bool:
    """Valid UTF-8, or mostly so: more valid multi-byte characters than undecodable bytes
    (a UTF-8 file with a few stray bytes stays UTF-8 and those rows are rejected)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
        return True
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", "surrogateescape")
    invalid = len(_SURROGATES.findall(text))
    if not final:  # a multi-byte character cut at the end of the head
        invalid -= len(_SURROGATES.findall(text[-3:]))
    multibyte = sum(1 for ch in text if ord(ch) > 0x7F) - len(_SURROGATES.findall(text))
    return multibyte > 0 and multibyte >= invalid


def _decode(data: bytes, encoding: str) -> str:
    errors = "replace" if encoding == "utf-8" else _CP1252_ERRORS
    return data.decode(encoding, errors)


def _sniff_delimiter(text: str, truncated: bool) -> str:
    """The candidate that the header uses and most records use the same number of times.

    Counted per record outside double quotes, so quoted cells with delimiters or newlines do
    not mislead. A file with none of them is a single column (comma).
    """
    counts = _count_outside_quotes(text)
    if truncated and len(counts) > 1:
        counts.pop()  # the last record may be cut off
    if not counts:
        return ","
    best, best_score = ",", (0.0, 0)
    for delim in DELIMITERS:
        header = counts[0][delim]
        if header == 0:
            continue
        agree = sum(1 for c in counts if c[delim] == header) / len(counts)
        score = (agree, header)
        if score > best_score:
            best, best_score = delim, score
    return best


def _count_outside_quotes(text: str) -> list[dict[str, int]]:
    counts: list[dict[str, int]] = []
    current = dict.fromkeys(DELIMITERS, 0)
    in_quotes = False
    nonblank = False
    for ch in text:
        if ch == QUOTE:
            in_quotes = not in_quotes
            nonblank = True
        elif in_quotes:
            pass
        elif ch in "\r\n":
            if nonblank:
                counts.append(current)
                if len(counts) >= SNIFF_RECORDS:
                    return counts
            current = dict.fromkeys(DELIMITERS, 0)
            nonblank = False
        elif ch in current:
            current[ch] += 1
            nonblank = True
        elif not ch.isspace():
            nonblank = True
    if nonblank:
        counts.append(current)
    return counts


# --------------------------------------------------------------------------- reading


class _Records:
    """csv.reader over a text file that also keeps each record's raw lines and flags.

    csv.reader pulls exactly the lines of one record per ``next()``, so the lines pulled
    since the previous record are that record's text; ``start`` is its physical line.
    """

    def __init__(self, path: Path, dialect: CsvDialect) -> None:
        self.path = path
        self.dialect = dialect
        self.lines: list[str] = []
        self.line_count = 0
        self.has_nul = False
        self.has_surrogates = False

    def _lines(self, file: Iterator[str]) -> Iterator[str]:
        for line in file:
            self.lines.append(line)
            self.line_count += 1
            if "\x00" in line:
                self.has_nul = True
            if not line.isascii() and _SURROGATES.search(line):
                self.has_surrogates = True
            yield line

    def records(self) -> Generator[_Record, None, None]:
        """Yields (start line, fields, csv error); blank records are skipped."""
        utf8 = self.dialect.encoding == "utf-8"
        try:
            file = self.path.open(
                encoding="utf-8-sig" if utf8 else self.dialect.encoding,
                errors="surrogateescape" if utf8 else _CP1252_ERRORS,
                newline="",
            )
        except FileNotFoundError:
            raise InputFileError(f"{self.path}: file not found") from None
        with file:
            reader = csv.reader(
                self._lines(file), delimiter=self.dialect.delimiter, quotechar=QUOTE
            )
            while True:
                start = self.line_count + 1
                self.lines.clear()
                self.has_nul = self.has_surrogates = False
                try:
                    fields: list[str] | None = next(reader)
                    error = None
                except StopIteration:
                    return
                except csv.Error as exc:
                    fields, error = None, f"malformed CSV ({exc})"
                if fields is not None and not any(f.strip() for f in fields):
                    continue
                yield start, fields, error

    def raw(self) -> str:
        text = "".join(self.lines)
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith(("\n", "\r")):
            text = text[:-1]
        return _SURROGATES.sub(_escaped_byte, text) if self.has_surrogates else text


def _escaped_byte(match: re.Match[str]) -> str:
    return bytes([ord(match.group()) - 0xDC00]).decode("cp1252", _CP1252_ERRORS)


def _header_names(fields: list[str]) -> list[str]:
    """Names stripped; empty ones become "column N", repeated ones "Email (2)"."""
    names: list[str] = []
    seen: set[str] = set()
    wanted = [f.strip().lstrip("\ufeff").strip() for f in fields]
    taken = set(wanted)
    for position, name in enumerate(wanted, start=1):
        if not name:
            name = f"column {position}"
        if name in seen:
            base, n = name, 2
            while f"{base} ({n})" in seen or f"{base} ({n})" in taken:
                n += 1
            name = f"{base} ({n})"
        seen.add(name)
        names.append(name)
    return names


def _read_header(records: Iterator[_Record], path: Path) -> list[str]:
    for _, fields, error in records:
        if fields is None:
            raise InputFileError(f"{path}: the header line cannot be read: {error}")
        return _header_names([_SURROGATES.sub(_escaped_byte, f) for f in fields])
    raise InputFileError(f"{path}: the file is empty (no header line)")


def read_header(path: Path, dialect: CsvDialect) -> list[str]:
    """The column names; raises InputFileError for a file without data rows."""
    records = _Records(Path(path), dialect).records()
    try:
        header = _read_header(records, path)
        if next(records, None) is None:
            raise InputFileError(f"{path}: the file has a header but no data rows")
    finally:
        records.close()
    return header


def read_chunks(path: Path, dialect: CsvDialect, *, chunk_rows: int = 10_000) -> Iterator[CsvChunk]:
    """Data records in chunks of at most ``chunk_rows`` records (rows plus rejects)."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    source = _Records(Path(path), dialect)
    records = source.records()
    header = _read_header(records, path)
    width = len(header)
    rows: list[list[str]] = []
    lines: list[int] = []
    rejects: list[InputReject] = []
    any_data = False
    for start, fields, error in records:
        any_data = True
        reasons = []
        if source.has_surrogates:
            reasons.append("undecodable bytes (not UTF-8)")
        if source.has_nul:
            reasons.append("row contains NUL bytes")
        end = start + len(source.lines) - 1
        if error is not None:
            reasons.append(error)
        elif end > start and "".join(source.lines).count(QUOTE) % 2:
            # csv (non-strict) lets an unclosed quote swallow the following lines
            reasons.append(f"unclosed quote (the record runs over lines {start}-{end})")
        elif fields is not None and len(fields) != width:
            if len(fields) > width and not any(fields[width:]):
                del fields[width:]  # trailing empty cells, as spreadsheets write them
            else:
                reasons.append(f"row has {len(fields)} fields, the header has {width}")
        if reasons:
            rejects.append(InputReject(start, "; ".join(reasons), source.raw()))
        else:
            assert fields is not None
            rows.append(fields)
            lines.append(start)
        if len(rows) + len(rejects) >= chunk_rows:
            yield _chunk(header, rows, lines, rejects)
            rows, lines, rejects = [], [], []
    if not any_data:
        raise InputFileError(f"{path}: the file has a header but no data rows")
    if rows or rejects:
        yield _chunk(header, rows, lines, rejects)


def _chunk(
    header: list[str], rows: list[list[str]], lines: list[int], rejects: list[InputReject]
) -> CsvChunk:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    frame = pd.DataFrame(
        {name: pd.Series(list(col), dtype="str") for name, col in zip(header, columns, strict=True)}
    )
    return CsvChunk(frame=frame, lines=lines, rejects=rejects)
