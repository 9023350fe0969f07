"""Streaming reading of spreadsheet CSV exports: encoding, delimiter, physical line numbers.

Real exports are messy: UTF-8 with or without a BOM or Windows-1252, comma/semicolon/tab/pipe
separated, quoted cells spanning lines, ragged rows, stray NUL or undecodable bytes. Whole-file
problems raise :class:`InputFileError`; a bad record becomes an :class:`InputReject` with its
physical line number and never stops the read. Memory is bounded by ``chunk_rows`` and the block
size. Blocks of well-formed records are parsed by pyarrow (:mod:`etl.extract.csv_fast`), the rest
by the exact reader here (Python's ``csv``), with the same outcome to the cell and the line.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.extract import csv_fast

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


@dataclass(eq=False)
class CsvChunk:
    """Up to ``chunk_rows`` records: ``table`` holds the good ones (one string column per
    header name, "" for an empty cell), ``lines[i]`` the physical line where row ``i`` starts.

    ``reader`` says which reader took the records ("arrow", "python" or "arrow+python");
    the contents are the same either way. ``frame`` is a pandas view of ``table``.
    """

    table: pa.Table
    lines: np.ndarray
    rejects: list[InputReject] = field(default_factory=list)
    reader: str = "python"

    @cached_property
    def frame(self) -> pd.DataFrame:
        return self.table.to_pandas()


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
    """csv.reader over lines of text that also keeps each record's raw lines and flags.

    csv.reader pulls exactly the lines of one record per ``next()``, so the lines pulled
    since the previous record are that record's text; ``start`` is its physical line.
    ``cut_short`` says a record ran into the end of the text (an unclosed quote, or a block
    cut inside a record).
    """

    def __init__(self, text: Iterable[str], delimiter: str, first_line: int = 1) -> None:
        self.text = text
        self.delimiter = delimiter
        self.lines: list[str] = []
        self.line_count = first_line - 1
        self.has_nul = False
        self.has_surrogates = False
        self.exhausted = False
        self.cut_short = False

    def _lines(self) -> Iterator[str]:
        for line in self.text:
            self.lines.append(line)
            self.line_count += 1
            if "\x00" in line:
                self.has_nul = True
            if not line.isascii() and _SURROGATES.search(line):
                self.has_surrogates = True
            yield line
        self.exhausted = True

    def records(self) -> Generator[_Record, None, None]:
        """Yields (start line, fields, csv error); blank records are skipped."""
        reader = csv.reader(self._lines(), delimiter=self.delimiter, quotechar=QUOTE)
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
            if self.exhausted:
                self.cut_short = True
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


def _open_text(path: Path, dialect: CsvDialect, offset: int = 0) -> io.TextIOWrapper:
    utf8 = dialect.encoding == "utf-8"
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    raw.seek(offset)
    return io.TextIOWrapper(
        raw,
        encoding=("utf-8-sig" if offset == 0 else "utf-8") if utf8 else dialect.encoding,
        errors="surrogateescape" if utf8 else _CP1252_ERRORS,
        newline="",
    )


def _decode_block(data: bytes, encoding: str) -> str:
    return data.decode(encoding, "surrogateescape" if encoding == "utf-8" else _CP1252_ERRORS)


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
    with _open_text(Path(path), dialect) as text:
        records = _Records(text, dialect.delimiter).records()
        try:
            header = _read_header(records, path)
            if next(records, None) is None:
                raise InputFileError(f"{path}: the file has a header but no data rows")
        finally:
            records.close()
    return header


def read_chunks(
    path: Path,
    dialect: CsvDialect,
    *,
    chunk_rows: int = 10_000,
    fast: bool = True,
    block_bytes: int = csv_fast.BLOCK_BYTES,
) -> Iterator[CsvChunk]:
    """Data records in chunks of exactly ``chunk_rows`` records (rows plus rejects; the last
    chunk holds the rest), the same whichever reader took them.

    Blocks of well-formed records are parsed by pyarrow (``reader == "arrow"``); a block that
    is not provably read the same way (blank lines, NUL or undecodable bytes, odd quoting) goes
    through the exact Python reader, and so does the rest of the file when a block boundary
    cannot be proved. ``fast=False`` reads everything exactly. Memory is bounded by
    ``chunk_rows`` and ``block_bytes`` (the bytes read at a time).
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    path = Path(path)
    records = 0
    pending: list[_Piece] = []
    pending_records = 0
    for piece in _pieces(path, dialect, chunk_rows, fast, block_bytes):
        records += piece.records
        pending.append(piece)
        pending_records += piece.records
        while pending_records >= chunk_rows:
            chunk, pending = _take(pending, chunk_rows)
            pending_records -= chunk_rows
            yield chunk
    if not records:
        raise InputFileError(f"{path}: the file has a header but no data rows")
    if pending_records:
        yield _take(pending, pending_records)[0]


@dataclass
class _Piece:
    """Records of the file in order: the good rows and the rejects, with their lines."""

    table: pa.Table
    lines: np.ndarray
    rejects: list[InputReject]
    reader: str

    @property
    def records(self) -> int:
        return self.table.num_rows + len(self.rejects)

    def split(self, count: int) -> tuple[_Piece, _Piece]:
        """The first ``count`` records (by line) and the rest."""
        reject_lines = np.array([r.line for r in self.rejects], dtype=np.int64)
        merged = np.sort(np.concatenate([self.lines, reject_lines]))
        last = merged[count - 1]
        rows = int(np.searchsorted(self.lines, last, side="right"))
        rejects = sum(1 for r in self.rejects if r.line <= last)
        head = _Piece(
            self.table.slice(0, rows), self.lines[:rows], self.rejects[:rejects], self.reader
        )
        tail = _Piece(
            self.table.slice(rows), self.lines[rows:], self.rejects[rejects:], self.reader
        )
        return head, tail


def _take(pending: list[_Piece], count: int) -> tuple[CsvChunk, list[_Piece]]:
    taken: list[_Piece] = []
    while count:
        piece = pending.pop(0)
        if piece.records > count:
            piece, rest = piece.split(count)
            pending.insert(0, rest)
        taken.append(piece)
        count -= piece.records
    taken = [p for p in taken if p.records]
    readers = sorted({p.reader for p in taken})
    table = pa.concat_tables([p.table for p in taken]) if len(taken) > 1 else taken[0].table
    chunk = CsvChunk(
        table=table,
        lines=np.concatenate([p.lines for p in taken]).astype(np.int64),
        rejects=[r for p in taken for r in p.rejects],
        reader="+".join(readers),
    )
    return chunk, pending


def _pieces(
    path: Path, dialect: CsvDialect, size: int, fast: bool, block_bytes: int
) -> Iterator[_Piece]:
    """The file's records in order: per block from the fast path where it proves identical."""
    with _open_text(path, dialect) as text:
        source = _Records(text, dialect.delimiter)
        records = source.records()
        header = _read_header(records, path)
        if not fast or source.line_count != 1:  # a header over several lines, or after blanks
            yield from _exact_pieces(source, records, header, size)
            return
        records.close()
    width = len(header)

    def parse(block: csv_fast.Block) -> csv_fast.FastBlock | None:
        """In the read-ahead thread; lines counted from 0 (shifted below)."""
        if not block.cut:
            return None
        data = block.data
        if dialect.encoding != "utf-8":
            data = _decode_block(data, dialect.encoding).encode()
        return csv_fast.parse_block(data, dialect.delimiter, width, first_line=0)

    with path.open("rb") as file:
        data_start = _after_first_line(file)
        line = 2
        blocks = csv_fast.blocks(file, data_start, block_bytes)
        with closing(csv_fast.read_ahead(blocks, parse)) as parsed_blocks:
            for block, parsed in parsed_blocks:
                if not block.cut:
                    yield from _exact_rest(path, dialect, header, block.offset, line, size)
                    return
                if parsed is not None:
                    rejects = [InputReject(at + line, why, raw) for at, why, raw in parsed.rejects]
                    table = parsed.table.rename_columns(header)
                    yield _Piece(table, parsed.lines + line, rejects, "arrow")
                    line += parsed.line_count
                    continue
                source = _Records(
                    io.StringIO(_decode_block(block.data, dialect.encoding), newline=""),
                    dialect.delimiter,
                    first_line=line,
                )
                pieces = list(_exact_pieces(source, source.records(), header, size=1 << 62))
                if source.cut_short and not block.final:  # the cut was inside a record
                    yield from _exact_rest(path, dialect, header, block.offset, line, size)
                    return
                yield from pieces
                line = source.line_count + 1


def _after_first_line(file: BinaryIO) -> int:
    """The offset just after the first line break (``\\r\\n``, ``\\r`` or ``\\n``), or the size."""
    offset = 0
    while block := file.read(1 << 16):
        ends = [i for i in (block.find(b"\r"), block.find(b"\n")) if i >= 0]
        if ends:
            end = offset + min(ends)
            file.seek(end)
            return end + (2 if file.read(2) == b"\r\n" else 1)
        offset += len(block)
    return offset


def _exact_rest(
    path: Path, dialect: CsvDialect, header: list[str], offset: int, line: int, size: int
) -> Iterator[_Piece]:
    with _open_text(path, dialect, offset) as text:
        source = _Records(text, dialect.delimiter, first_line=line)
        yield from _exact_pieces(source, source.records(), header, size)


def _exact_pieces(
    source: _Records, records: Iterator[_Record], header: list[str], size: int
) -> Iterator[_Piece]:
    """Records read by the exact reader, in pieces of at most ``size`` records."""
    width = len(header)
    rows: list[list[str]] = []
    lines: list[int] = []
    rejects: list[InputReject] = []
    for start, fields, error in records:
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
        if len(rows) + len(rejects) >= size:
            yield _exact_piece(header, rows, lines, rejects)
            rows, lines, rejects = [], [], []
    if rows or rejects:
        yield _exact_piece(header, rows, lines, rejects)


def _exact_piece(
    header: list[str], rows: list[list[str]], lines: list[int], rejects: list[InputReject]
) -> _Piece:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    table = pa.table([pa.array(col, pa.string()) for col in columns], names=header)
    return _Piece(table, np.array(lines, dtype=np.int64), rejects, "python")
