"""The vocabulary every source reader uses to describe its files: columns, ids, and row checks.

A reader (crm.py, web.py, ...) only *declares* what its files look like; the loader turns those
declarations into one set-based SQL pass per batch, so adding a column or a rule never means
writing another loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Rule(StrEnum):
    """Why a row was rejected at ingestion; the codes are shared with the generator's truth."""

    COLUMN_COUNT = "column_count"
    INVALID_JSON = "invalid_json"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_DATE = "invalid_date"
    UNKNOWN_VALUE = "unknown_value"
    MISSING_REQUIRED = "missing_required"


class Kind(StrEnum):
    TEXT = "text"
    DATE = "date"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    ENUM = "enum"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = Kind.TEXT
    required: bool = False
    allowed: tuple[str, ...] = ()  # for Kind.ENUM
    allow_list: bool = False  # ENUM given as ';'-separated codes, or the word `all`
    pii: bool = False  # hidden from the analyst role


def text(name: str, *, required: bool = False, pii: bool = False) -> Column:
    return Column(name, Kind.TEXT, required=required, pii=pii)


def date(name: str, *, required: bool = False, pii: bool = False) -> Column:
    return Column(name, Kind.DATE, required=required, pii=pii)


def timestamp(name: str, *, required: bool = False) -> Column:
    return Column(name, Kind.TIMESTAMP, required=required)


def boolean(name: str, *, required: bool = False) -> Column:
    return Column(name, Kind.BOOLEAN, required=required)


def integer(name: str, *, required: bool = False) -> Column:
    return Column(name, Kind.INTEGER, required=required)


def enum(name: str, allowed: tuple[str, ...], *, required: bool = True) -> Column:
    return Column(name, Kind.ENUM, required=required, allowed=allowed)


@dataclass(frozen=True)
class StopRows:
    """Which rows of a file carry a revocation, restriction or erase request ("stop").

    Such a row is never dropped for a defect in a field it does not need (DESIGN section 12):
    the defective field is emptied and reported as a warning. A receipt time that cannot be
    read, or that lies after the batch's arrival, becomes the arrival time (also reported).
    """

    when: str  # SQL condition over the raw (text) columns of the partition
    needs: tuple[str, ...]  # columns whose defects still reject the row (ids, the stop's codes)
    receipt: str | None = None  # the timestamp column that says when the stop was received


@dataclass(frozen=True)
class FileSpec:
    """One file of a batch and the raw table it lands in (schema `raw`, all columns text)."""

    file_name: str
    table: str
    columns: tuple[Column, ...]
    record_key: tuple[str, ...]  # the columns that name a record in rejections, in order
    key_separator: str = ":"
    file_format: str = "csv"  # csv | jsonl
    optional: bool = False  # a batch may omit this file
    stop_rows: StopRows | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def record_id(self) -> str:
        """SQL expression over the raw columns naming the record (null if a part is missing)."""
        separator = "'" + self.key_separator.replace("'", "''") + "'"
        return f" || {separator} || ".join(self.record_key)

    def record_id_of(self, values: dict[str, str]) -> str | None:
        """The same id from one parsed line (column name -> value), for lines that never load."""
        parts = [(values.get(name) or "").strip() for name in self.record_key]
        return self.key_separator.join(parts) if all(parts) else None


@dataclass(frozen=True)
class SourceSpec:
    name: str
    files: tuple[FileSpec, ...]
    description: str = ""
    # JSON sources: extra tables derived from the same lines (e.g. web consents array)
    child_tables: tuple[FileSpec, ...] = field(default=())

    @property
    def tables(self) -> list[FileSpec]:
        return [*self.files, *self.child_tables]


PURPOSES = ("processing", "storage", "third_party_transfer", "marketing", "analytics")
CHANNELS = ("call", "sms", "email", "messenger", "push", "post", "any")
BOOLEAN_WORDS = ("true", "false")
