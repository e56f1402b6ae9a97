"""Turning landing-zone files into arrow tables or line streams, with physical line numbers.

Files are read in newline-aligned chunks so memory stays flat at any file size. CSV parsing is
pyarrow's (C++, vectorised); Python only touches individual lines on the rare bad ones (wrong
column count, bytes that are not UTF-8), which become rejections instead of stopping the load.
"""

from __future__ import annotations

import io
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


@dataclass
class Chunk:
    first_line: int  # physical line number of the chunk's first line
    data: bytes
    problems: list[LineProblem] = field(default_factory=list)
    dropped_lines: list[int] = field(default_factory=list)  # lines blanked after a problem


def iter_chunks(path: Path, first_line: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Yield newline-aligned chunks from the current position, lines that are not UTF-8 blanked.

    A blanked line keeps its place (so later line numbers stay exact) and is reported once.
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
            chunk = Chunk(first_line=line, data=data)
            _blank_undecodable_lines(chunk)
            yield chunk
            line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _blank_undecodable_lines(chunk: Chunk) -> None:
    try:
        chunk.data.decode("utf-8")
        return
    except UnicodeDecodeError:
        pass
    lines = chunk.data.split(b"\n")
    for offset, raw in enumerate(lines):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            number = chunk.first_line + offset
            chunk.problems.append(
                LineProblem(
                    line_number=number,
                    rule=Rule.INVALID_ENCODING,
                    reason=f"bytes at position {error.start} are not valid UTF-8",
                    text=raw.decode("utf-8", errors="replace"),
                )
            )
            chunk.dropped_lines.append(number)
            lines[offset] = b""
    chunk.data = b"\n".join(lines)


def read_header(path: Path) -> tuple[list[str], int]:
    """The header's column names, and the byte length of the header line (BOM tolerated)."""
    with open(path, "rb") as handle:
        raw = handle.readline()
    text = raw.decode("utf-8-sig", errors="strict").rstrip("\r\n")
    return [name.strip() for name in next(iter(_csv_rows(text)))], len(raw)


def _csv_rows(text: str):
    import csv

    return csv.reader(io.StringIO(text))


def parse_csv_chunk(chunk: Chunk, column_names: list[str]) -> pa.Table:
    """Parse one chunk into an all-string table with a `_line_number` column.

    Rows with the wrong number of fields are reported on the chunk and skipped; the line
    numbers of the remaining rows are recomputed exactly, including rows whose quoted values
    span several physical lines.
    """
    invalid: list[tuple[int, str]] = []

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(chunk.data),
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
    valid_lines, invalid_lines = _physical_lines(table, chunk.first_line, invalid)
    expected = len(column_names)
    for line_number, (_, row_text) in zip(invalid_lines.tolist(), invalid, strict=True):
        if line_number in chunk.dropped_lines:
            continue
        actual = len(next(iter(_csv_rows(row_text)), []))
        chunk.problems.append(
            LineProblem(
                line_number=line_number,
                rule=Rule.COLUMN_COUNT,
                reason=f"expected {expected} fields, found {actual}",
                text=row_text,
            )
        )
    table = table.append_column("_line_number", pa.array(valid_lines, pa.int64()))
    if chunk.dropped_lines:
        keep = pc.invert(pc.is_in(table["_line_number"], pa.array(chunk.dropped_lines, pa.int64())))
        table = table.filter(keep)
    return table


def _physical_lines(
    table: pa.Table, first_line: int, invalid: list[tuple[int, str]]
) -> tuple[np.ndarray, np.ndarray]:
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
    return lines[is_valid], lines[invalid_records - 1]


def iter_lines_for_copy(chunk: Chunk) -> bytes:
    """The chunk as it goes to COPY: one text line per row (blanked lines stay as empty rows)."""
    return chunk.data if chunk.data.endswith(b"\n") else chunk.data + b"\n"
