"""Turning landing-zone files into arrow tables or line streams, with physical line numbers.

Files are read in newline-aligned chunks so memory stays flat at any file size. CSV parsing is
pyarrow's (C++, vectorised); Python only touches individual lines on the rare bad ones (wrong
column count, bytes that are not UTF-8), which become rejections instead of stopping the load.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sources.spec import Rule

CHUNK_BYTES = 64 * 1024 * 1024


class BatchFileError(Exception):
    """A file of a batch is missing, unreadable or not in the agreed shape: the batch fails."""


@dataclass
class LineProblem:
    line_number: int
    rule: Rule
    reason: str
    text: str  # the line as far as it could be decoded; personal data, kept out of logs
    field: str | None = None
    severity: str = "reject"  # or "warn": the line still loads


@dataclass
class Chunk:
    first_line: int  # physical line number of the chunk's first line
    data: bytes
    problems: list[LineProblem] = field(default_factory=list)
    # lines whose bytes were not UTF-8 (or held NUL): decoded with U+FFFD in place of the bad
    # bytes, so that a revocation among them can still be honoured; the loader rejects the
    # others once it knows which rows carry a stop
    damaged_lines: dict[int, str] = field(default_factory=dict)  # line number -> reason


def iter_chunks(
    path: Path, first_line: int, chunk_bytes: int = CHUNK_BYTES, encoding: str = "utf-8"
) -> Iterator[Chunk]:
    """Yield newline-aligned chunks from the current position, damaged lines repaired.

    A line that is not valid UTF-8, or holds a NUL byte (PostgreSQL text cannot), keeps its
    place (so later line numbers stay exact) and is listed once in `damaged_lines`. A file in a
    legacy single-byte encoding (`encoding`, see `legacy_encoding`) is transcoded as it is read.
    """
    with open(path, "rb") as handle:
        if first_line > 1:
            for _ in range(first_line - 1):
                handle.readline()
        line = first_line
        while True:
            data = handle.read(chunk_bytes)
            if not data:
                return
            if not data.endswith(b"\n"):
                data += handle.readline()
            lines_in_chunk = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            if encoding != "utf-8":
                data = data.decode(encoding, errors="replace").encode("utf-8")
            chunk = Chunk(first_line=line, data=data)
            _repair_damaged_lines(chunk)
            yield chunk
            line += lines_in_chunk


_LONE_CR = re.compile(rb"\r(?!\n)")


def _repair_damaged_lines(chunk: Chunk) -> None:
    lone_cr = b"\r" in chunk.data and _LONE_CR.search(chunk.data) is not None
    if b"\x00" not in chunk.data and not lone_cr:
        try:
            chunk.data.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    lines = chunk.data.split(b"\n")
    for offset, raw in enumerate(lines):
        reason = None
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            reason = f"bytes at position {error.start} are not valid UTF-8"
        if b"\x00" in raw:
            reason = reason or f"a NUL byte at position {raw.index(0)}"
        if lone_cr and _LONE_CR.search(raw):
            # a CSV parser would end the record there, and line numbers would drift
            reason = reason or "a carriage return inside the line"
        if reason is None:
            continue
        chunk.damaged_lines[chunk.first_line + offset] = reason
        text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        lines[offset] = _LONE_CR.sub(b" ", text.encode())
    chunk.data = b"\n".join(lines)


def legacy_encoding(path: Path, sample_bytes: int = 1 << 20) -> str:
    """'utf-8', or 'cp1251' for a file that is plainly Windows-1251 rather than UTF-8.

    Plainly: in its first megabyte (header included) at least half of the lines are not UTF-8,
    no line holds a non-ASCII UTF-8 character, and the bytes are all Windows-1251 characters.
    A UTF-8 file with a few stray Windows-1251 lines stays UTF-8 and is repaired line by line.
    """
    with open(path, "rb") as handle:
        sample = handle.read(sample_bytes)
    if len(sample) == sample_bytes and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n")]
    lines = [raw for raw in sample.split(b"\n") if raw.strip()]
    broken = 0
    for raw in lines:
        if raw.isascii():
            continue
        try:
            raw.decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError:
            broken += 1
    if broken < 2 or broken * 2 < len(lines):
        return "utf-8"
    try:
        sample.decode("cp1251")
    except UnicodeDecodeError:
        return "utf-8"
    return "cp1251"


def read_header(path: Path, encoding: str = "utf-8") -> tuple[list[str], int]:
    """The header's column names, and the byte length of the header line (BOM tolerated)."""
    with open(path, "rb") as handle:
        raw = handle.readline()
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    text = raw.decode(codec, errors="strict").rstrip("\r\n")
    return [name.strip() for name in next(iter(_csv_rows(text)))], len(raw)


# a stray quote can make one "field" of a whole file: count it, never fail on its size
csv.field_size_limit(sys.maxsize)


def _csv_rows(text: str, quoting: int = csv.QUOTE_MINIMAL):
    return csv.reader(io.StringIO(text), quoting=quoting)


# a chunk with more stray quotes than this is read line by line past them (no multi-line values)
MAX_REREADS = 100


def parse_csv_chunk(chunk: Chunk, column_names: list[str]) -> pa.Table:
    """Parse one chunk into an all-string table with a `_line_number` column.

    Rows with the wrong number of fields are reported on the chunk and skipped; the line
    numbers of the remaining rows are recomputed exactly, including rows whose quoted values
    span several physical lines. A record that spans lines only because of a stray quote (one
    of its continuation lines is a whole record by itself), or a broken record over several
    lines, is not trusted: its first line is read alone (`_salvage_line`) and the chunk is read
    again from the next line, so one bad quote never swallows the lines after it.
    """
    expected = len(column_names)
    lines = chunk.data.split(b"\n")
    tables: list[pa.Table] = []
    rescued: list[tuple[int, list[str]]] = []
    start = 0  # index into `lines` where the current reading starts
    for rereads in range(MAX_REREADS + 1):
        data = b"\n".join(lines[start:])
        if not data:
            break
        first_line = chunk.first_line + start
        table, single_bad, suspicious = _parse_once(data, first_line, column_names)
        if not suspicious:
            tables.append(table)
            _report_column_counts(chunk, single_bad, expected)
            break
        if rereads == MAX_REREADS:  # give up on multi-line values: every line of its own
            firsts = pa.array([first for first, _ in suspicious], pa.int64())
            tables.append(table.filter(pc.invert(pc.is_in(table["_line_number"], firsts))))
            _report_column_counts(chunk, single_bad, expected)
            for first, span in suspicious:
                for number in range(first, first + span):
                    text = _line_text(lines, number - chunk.first_line)
                    if (fields := _salvage_line(chunk, number, text, expected)) is not None:
                        rescued.append((number, fields))
            break
        bad_at = suspicious[0][0]
        tables.append(table.filter(pc.less(table["_line_number"], bad_at)))
        _report_column_counts(chunk, [(n, t) for n, t in single_bad if n < bad_at], expected)
        text = _line_text(lines, bad_at - chunk.first_line)
        if (fields := _salvage_line(chunk, bad_at, text, expected)) is not None:
            rescued.append((bad_at, fields))
        start = bad_at - chunk.first_line + 1
    if rescued:
        tables.append(
            pa.table(
                {
                    **{
                        name: pa.array([fields[i] for _, fields in rescued], pa.string())
                        for i, name in enumerate(column_names)
                    },
                    "_line_number": pa.array([n for n, _ in rescued], pa.int64()),
                }
            )
        )
    if not tables:
        return _read_csv(b"", column_names)[0].append_column(
            "_line_number", pa.array([], pa.int64())
        )
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.sort_by("_line_number") if len(tables) > 1 else table


def _line_text(lines: list[bytes], index: int) -> str:
    return lines[index].decode("utf-8").rstrip("\r")


def _parse_once(
    data: bytes, first_line: int, column_names: list[str]
) -> tuple[pa.Table, list[tuple[int, str]], list[tuple[int, int]]]:
    """One pyarrow pass: the table (with `_line_number`), bad one-line records (line, text),
    and the suspicious multi-line records as (first line, number of lines), in line order."""
    expected = len(column_names)
    table, invalid = _read_csv(data, column_names)
    valid_lines, valid_spans, invalid_lines = _physical_lines(table, first_line, invalid)
    table = table.append_column("_line_number", pa.array(valid_lines, pa.int64()))
    lines = data.split(b"\n")
    suspicious: list[tuple[int, int]] = []
    for row in np.nonzero(valid_spans > 1)[0].tolist():  # rare: records over several lines
        first, span = int(valid_lines[row]), int(valid_spans[row])
        continuation = range(first + 1 - first_line, first + span - first_line)
        if any(_looks_like_a_record(_line_text(lines, i), expected) for i in continuation):
            suspicious.append((first, span))
    single_bad: list[tuple[int, str]] = []
    for line_number, (_, row_text) in zip(invalid_lines.tolist(), invalid, strict=True):
        span = row_text.count("\n") + 1
        if span > 1:
            suspicious.append((line_number, span))
        else:
            single_bad.append((line_number, row_text))
    suspicious.sort()
    return table, single_bad, suspicious


def _report_column_counts(chunk: Chunk, bad: list[tuple[int, str]], expected: int) -> None:
    for line_number, row_text in bad:
        chunk.problems.append(
            LineProblem(
                line_number=line_number,
                rule=Rule.COLUMN_COUNT,
                reason=f"expected {expected} fields, found {_field_count(row_text)}",
                text=row_text,
            )
        )


def _read_csv(data: bytes, column_names: list[str]) -> tuple[pa.Table, list[tuple[int, str]]]:
    invalid: list[tuple[int, str]] = []

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(
            column_names=column_names, use_threads=False, block_size=1 << 26
        ),
        parse_options=pacsv.ParseOptions(
            invalid_row_handler=on_invalid, newlines_in_values=True, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in column_names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table, invalid


def _field_count(text: str) -> int:
    return len(next(iter(_csv_rows(text)), []))


def _looks_like_a_record(text: str, expected: int) -> bool:
    """A whole record by itself, as CSV or with its quotes taken as plain characters."""
    if _field_count(text) == expected:
        return True
    return len(next(iter(_csv_rows(text, quoting=csv.QUOTE_NONE)), [])) == expected


def split_line(text: str, expected: int) -> list[str]:
    """The fields of one line: as CSV, or with quotes as plain characters where that fits the
    contract's field count (a line with an unbalanced quote)."""
    fields = next(iter(_csv_rows(text)), [])
    if len(fields) != expected:
        literal = next(iter(_csv_rows(text, quoting=csv.QUOTE_NONE)), [])
        if len(literal) == expected or len(literal) > len(fields):
            return literal
    return fields


def _salvage_line(chunk: Chunk, line_number: int, text: str, expected: int) -> list[str] | None:
    """One physical line as a record of its own, or None (then reported on the chunk).

    Read as CSV first; a line with an unbalanced quote is then read with quotes as plain
    characters, which keeps a letter whose name starts with a stray `"` (and warns).
    """
    if text.strip() == "":
        fields = [""] * expected  # a blank line: rejected downstream as "no values at all"
        return fields
    fields = next(iter(_csv_rows(text)), [])
    if len(fields) == expected:
        return fields
    literal = next(iter(_csv_rows(text, quoting=csv.QUOTE_NONE)), [])
    if len(literal) == expected:
        chunk.problems.append(
            LineProblem(
                line_number=line_number,
                rule=Rule.COLUMN_COUNT,
                reason="an unbalanced quote; quotes read as plain characters",
                text=text,
                severity="warn",
            )
        )
        return literal
    chunk.problems.append(
        LineProblem(
            line_number=line_number,
            rule=Rule.COLUMN_COUNT,
            reason=f"expected {expected} fields, found {len(fields)}"
            + (" (an unbalanced quote)" if text.count('"') % 2 else ""),
            text=text,
        )
    )
    return None


def _physical_lines(
    table: pa.Table, first_line: int, invalid: list[tuple[int, str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical line of each parsed row and of each skipped row.

    pyarrow numbers records (1-based, skipped ones included), not lines: a record whose quoted
    values hold newlines takes several lines, so lines are records plus the newlines before them.
    """
    valid_count = table.num_rows
    total = valid_count + len(invalid)
    valid_extra = np.zeros(valid_count, dtype=np.int64)
    for column in table.columns:
        valid_extra += pc.count_substring(column, "\n").to_numpy(zero_copy_only=False)
    invalid_records = np.array([number for number, _ in invalid], dtype=np.int64)
    is_valid = np.ones(total, dtype=bool)
    is_valid[invalid_records - 1] = False
    extra = np.zeros(total, dtype=np.int64)
    extra[is_valid] = valid_extra
    extra[~is_valid] = [text.count("\n") for _, text in invalid]
    newlines_before = np.concatenate(([0], np.cumsum(extra)[:-1])) if total else extra
    lines = first_line + np.arange(total, dtype=np.int64) + newlines_before
    return lines[is_valid], valid_extra + 1, lines[invalid_records - 1]


def iter_lines_for_copy(chunk: Chunk) -> bytes:
    """The chunk as it goes to COPY: one text line per row (blanked lines stay as empty rows)."""
    return chunk.data if chunk.data.endswith(b"\n") else chunk.data + b"\n"
