"""The fast path of CSV reading: blocks of whole records parsed by ``pyarrow.csv``.

:mod:`etl.extract.csv_input` reads the file in blocks cut after a newline and hands each block
here. :func:`parse_block` returns what the exact Python reader would make of the block (the same
cells, physical line numbers and rejects) or ``None`` when that is not provably so; the caller
then reads the block with the exact reader. Arrow's CSV state machine is the one of Python's
``csv`` module (a quote opens only at the start of a field, ``""`` inside quotes is a quote, a
quote elsewhere is a character), so what remains to prove is cheap: the block ends outside
quotes (a sentinel record appended to it comes out as a record of its own), every physical line
belongs to a record Arrow saw (``ignore_empty_lines=False``; the line breaks counted in the bytes
equal one per record plus those inside its cells), no NUL bytes, valid UTF-8, no cell over
``csv.field_size_limit()``, and no multi-line record whose quotes Python would call unclosed.
Records Arrow finds invalid (another number of fields) are re-read with ``csv`` one by one: they
become rejects, rows (trailing empty cells) or nothing (blank), as in the exact reader.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

# 1 MiB: as fast as 4 MiB, and the import's first pass peaks ~70 MB lower at 1M rows (fewer
# large buffers parked in the allocator between the read-ahead thread and the consumer).
BLOCK_BYTES = 1 << 20
QUOTE = '"'
# What str.strip() strips (str.isspace): a row of such cells is blank, the exact reader skips it.
_PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE_BYTES = np.zeros(256, dtype=bool)
_WHITESPACE_BYTES[list({b for c in _PY_WHITESPACE for b in c.encode()})] = True
_PARITY_TRIES = 64
_SENTINEL_TEXT = "\x00"
_SENTINEL = _SENTINEL_TEXT.encode()


@dataclass(frozen=True)
class Block:
    """Bytes ``[offset, offset + len(data))`` of the file; ``cut`` is False when no record
    boundary could be found within a bounded read (the caller reads on exactly)."""

    offset: int
    data: bytes
    final: bool
    cut: bool = True


@dataclass(frozen=True)
class FastBlock:
    """The block's good rows (columns ``c0..cN``), their start lines, its rejects as
    (line, reason, raw) and how many physical lines it spans."""

    table: pa.Table
    lines: np.ndarray
    rejects: list[tuple[int, str, str]]
    line_count: int


def blocks(file: BinaryIO, offset: int, block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """Blocks cut after a ``\\n`` where the quote count is even (a record boundary in a
    well-formed file; :func:`parse_block` proves it), streamed with bounded memory."""
    file.seek(offset)
    carry = b""
    while True:
        data = file.read(block_bytes)
        buf = carry + data if carry else data
        if not data:
            if buf:
                yield Block(offset, buf, final=True)
            return
        cut = _cut(buf)
        if cut == 0:
            if len(buf) >= 4 * block_bytes:  # no line break at all: leave it to the exact reader
                yield Block(offset, buf, final=False, cut=False)
                return
            carry = buf
            continue
        yield Block(offset, buf[:cut], final=False)
        offset += cut
        carry = buf[cut:]


def read_ahead(
    blocks: Iterator[Block], parse: Callable[[Block], FastBlock | None]
) -> Iterator[tuple[Block, FastBlock | None]]:
    """``(block, parse(block))`` in order, the next block parsed in a worker thread meanwhile
    (pyarrow parses without the GIL), so reading overlaps with whatever consumes the rows."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-read-ahead") as pool:
        pending: tuple[Block, Future[FastBlock | None]] | None = None
        try:
            for block in blocks:
                future = pool.submit(parse, block)
                if pending is not None:
                    yield pending[0], pending[1].result()
                pending = (block, future)
            if pending is not None:
                yield pending[0], pending[1].result()
        finally:
            if pending is not None:
                pending[1].cancel()


def _cut(buf: bytes) -> int:
    """Just after the last ``\\n`` with an even number of quotes before it; failing that, after
    the last ``\\n`` (an odd count then fails verification); 0 when there is none."""
    end = buf.rfind(b"\n")
    if end < 0:
        return 0
    quotes = int(np.count_nonzero(np.frombuffer(buf, np.uint8, count=end) == ord(QUOTE)))
    last = end
    for _ in range(_PARITY_TRIES):
        if quotes % 2 == 0:
            return end + 1
        previous = buf.rfind(b"\n", 0, end)
        if previous < 0:
            break
        quotes -= buf.count(b'"', previous, end)
        end = previous
    return last + 1


def physical_lines(data: bytes) -> int:
    """Lines as Python's universal newlines count them (``\\r\\n``, ``\\r``, ``\\n``)."""
    if not data:
        return 0
    codes = np.frombuffer(data, np.uint8)
    cr, lf = codes == ord("\r"), codes == ord("\n")
    count = np.count_nonzero(lf) + np.count_nonzero(cr) - np.count_nonzero(cr[:-1] & lf[1:])
    return int(count) + (1 if data[-1:] not in (b"\n", b"\r") else 0)


def parse_block(data: bytes, delimiter: str, width: int, first_line: int) -> FastBlock | None:
    """The block's records as the exact reader reads them, or None when not provably so.

    ``data`` is UTF-8 (the caller transcodes other encodings), starts at a record boundary and
    ends with a line break or at the end of the file.
    """
    if b"\x00" in data or not _utf8(data):
        return None
    line_count = physical_lines(data)
    end = b"" if data[-1:] in (b"\n", b"\r") else b"\n"
    data = data + end + _SENTINEL  # a record of its own only if the block ends outside quotes
    names = [f"c{i}" for i in range(width)]
    invalid: list[tuple[int | None, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=max(len(data) + 1, 1 << 20)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char=QUOTE,
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=False,  # checked above, faster
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a parse Arrow gives up on
    table = table.combine_chunks() if any(c.num_chunks > 1 for c in table.columns) else table
    table = _without_sentinel(table, invalid, width)
    if table is None:
        return None  # the block ends inside a quoted field: its cut is not a record boundary
    return _records(table, invalid, delimiter, width, first_line, line_count)


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int32))
    try:
        pa.StringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _without_sentinel(
    table: pa.Table, invalid: list[tuple[int | None, str]], width: int
) -> pa.Table | None:
    """The table without the sentinel record; None when the sentinel is not a record."""
    total = table.num_rows + len(invalid)
    if width == 1:
        if not table.num_rows or table.column(0)[-1].as_py() != _SENTINEL_TEXT:
            return None
        if any(number == total for number, _ in invalid):
            return None
        return table.slice(0, table.num_rows - 1)
    if not invalid or invalid[-1] != (total, _SENTINEL_TEXT):
        return None
    invalid.pop()
    return table


def _records(
    table: pa.Table,
    invalid: list[tuple[int | None, str]],
    delimiter: str,
    width: int,
    first_line: int,
    line_count: int,
) -> FastBlock | None:
    """Line numbers from the records' spans, blank rows dropped, invalid records settled."""
    total = table.num_rows + len(invalid)
    limit = csv.field_size_limit()
    invalid_at = np.array([n if n is not None else -1 for n, _ in invalid], dtype=np.int64) - 1
    if invalid and (invalid_at.min() < 0 or invalid_at.max() >= total):
        return None
    valid_at = np.delete(np.arange(total, dtype=np.int64), invalid_at)
    breaks = _cell_breaks(table, limit)
    if breaks is None:
        return None
    spans = np.ones(total, dtype=np.int64)
    spans[valid_at] += breaks
    texts = [text for _, text in invalid]
    for at, text in zip(invalid_at.tolist(), texts, strict=True):
        spans[at] += _breaks(text)
    if int(spans.sum()) != line_count:
        return None  # a line Arrow did not see as ours, or a quote left open at the end
    if _multiline_quotes(table, breaks):
        return None  # a multi-line record with quotes: the exact reader decides "unclosed"
    starts = first_line + np.cumsum(spans) - spans
    keep = ~_blank_rows(table)
    rows = table.filter(pa.array(keep)) if not keep.all() else table
    row_lines = starts[valid_at][keep]
    extra: list[tuple[int, list[str]]] = []
    rejects: list[tuple[int, str, str]] = []
    for at, text in zip(invalid_at.tolist(), texts, strict=True):
        if len(text) > limit:
            return None
        fields = _fields(text, delimiter)
        if fields is None or len(fields) == width:
            return None
        if not any(f.strip() for f in fields):
            continue  # blank, as the exact reader skips it
        if spans[at] > 1 and text.count(QUOTE) % 2:
            return None
        if len(fields) > width and not any(fields[width:]):
            extra.append((at, fields[:width]))  # trailing empty cells, as spreadsheets write them
        else:
            reason = f"row has {len(fields)} fields, the header has {width}"
            rejects.append((int(starts[at]), reason, text))
    if extra:
        rows, row_lines = _insert(rows, row_lines, extra, starts)
    return FastBlock(rows, row_lines.astype(np.int64), rejects, line_count)


def _cell_breaks(table: pa.Table, limit: int) -> np.ndarray | None:
    """Line breaks inside each row's cells; None when a cell is longer than the csv module
    allows (the exact reader then reports it)."""
    breaks = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        start = 0
        for array in column.chunks:
            codes, offsets = _values(array)
            if len(codes) >= limit and np.diff(offsets).max() >= limit:
                return None
            counts = _break_counts(codes, offsets)
            if counts is not None:
                breaks[start : start + len(array)] += counts
            start += len(array)
    return breaks


def _values(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The array's value bytes and its offsets into them (from 0)."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    values = array.buffers()[2]
    codes = np.frombuffer(values, np.uint8) if values is not None else np.zeros(0, np.uint8)
    return codes[offsets[0] : offsets[-1]], offsets - offsets[0]


def _break_counts(codes: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
    """Line breaks per cell (``\\r\\n``, ``\\r``, ``\\n``); None when there are none."""
    lf = np.flatnonzero(codes == ord("\n"))
    cr = np.flatnonzero(codes == ord("\r"))
    if not len(lf) and not len(cr):
        return None
    cells = len(offsets) - 1
    counts = np.bincount(_cell_of(lf, offsets), minlength=cells)
    if len(cr):
        counts += np.bincount(_cell_of(cr, offsets), minlength=cells)
        follows = cr[cr + 1 < len(codes)]
        pair = follows[codes[follows + 1] == ord("\n")]
        pair_cells = _cell_of(pair, offsets)
        pair_cells = pair_cells[pair_cells == _cell_of(pair + 1, offsets)]  # within one cell
        counts -= np.bincount(pair_cells, minlength=cells)
    return counts


def _cell_of(positions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.searchsorted(offsets, positions, side="right") - 1


def _multiline_quotes(table: pa.Table, breaks: np.ndarray) -> bool:
    """Whether a record over several lines holds a quote in a cell."""
    if not breaks.any():
        return False
    for column in table.columns:
        start = 0
        for array in column.chunks:
            codes, offsets = _values(array)
            quotes = np.flatnonzero(codes == ord(QUOTE))
            if len(quotes):
                rows = np.searchsorted(offsets, quotes, side="right") - 1
                if breaks[start + rows].any():
                    return True
            start += len(array)
    return False


def _breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _blank_rows(table: pa.Table) -> np.ndarray:
    """Rows whose cells all strip to "" (the exact reader skips them): first the cells of the
    first column made only of bytes that whitespace is encoded with, then as the exact reader."""
    blank = np.zeros(table.num_rows, dtype=bool)
    if not table.num_rows:
        return blank
    codes, offsets = _values(table.column(0).combine_chunks())
    others = np.concatenate([[0], np.cumsum(~_WHITESPACE_BYTES[codes])])
    candidates = np.flatnonzero(others[offsets[1:]] == others[offsets[:-1]])
    if len(candidates):
        for at, row in zip(candidates, table.take(candidates).to_pylist(), strict=True):
            blank[at] = not any(v.strip() for v in row.values())
    return blank


def _fields(text: str, delimiter: str) -> list[str] | None:
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error:
        return None
    return records[0] if len(records) == 1 else None


def _insert(
    rows: pa.Table, row_lines: np.ndarray, extra: list[tuple[int, list[str]]], starts: np.ndarray
) -> tuple[pa.Table, np.ndarray]:
    """Rows kept from records Arrow found invalid (trailing empty cells), put in line order."""
    columns = zip(*(fields for _, fields in extra), strict=True)
    added = pa.table([pa.array(col, pa.string()) for col in columns], names=rows.column_names)
    lines = np.concatenate([row_lines, starts[[at for at, _ in extra]]])
    order = np.argsort(lines, kind="stable")
    return pa.concat_tables([rows, added]).take(pa.array(order)), lines[order]
