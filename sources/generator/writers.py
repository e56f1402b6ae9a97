"""Streaming writers: one open handle per landing file, with physical line numbers."""

from __future__ import annotations

import csv
import json
from bisect import bisect_left
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HEADERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("crm", "clients.csv"): (
        "crm_client_id",
        "last_name",
        "first_name",
        "middle_name",
        "birth_date",
        "phone",
        "email",
        "passport",
        "address",
        "updated_at",
    ),
    ("crm", "contracts.csv"): (
        "contract_id",
        "crm_client_id",
        "contract_number",
        "system_code",
        "product_type",
        "product_name",
        "signed_at",
        "closed_at",
        "branch_code",
        "scan_url",
    ),
    ("crm", "consent_flags.csv"): (
        "crm_client_id",
        "contract_id",
        "flag_code",
        "value",
        "set_at",
        "set_by",
        "scan_url",
    ),
    ("web", "events.jsonl"): (),
    ("helpdesk", "tickets.csv"): (
        "ticket_id",
        "received_at",
        "request_type",
        "fio",
        "birth_date",
        "phone",
        "email",
        "passport",
        "contract_number",
        "scope_purposes",
        "scope_channels",
        "letter_scan_url",
        "closed_at",
    ),
    ("partner", "partner_clients.csv"): (
        "partner_code",
        "partner_client_id",
        "last_name",
        "first_name",
        "middle_name",
        "birth_date",
        "phone",
        "email",
        "consent_code",
        "granted",
        "obtained_at",
        "valid_until",
        "restricted_channels",
        "agreement_id",
        "evidence_url",
    ),
}
SOURCES = ("crm", "web", "helpdesk", "partner")
BATCH_OFFSET_DAYS = {"crm": 0, "web": 1, "helpdesk": 2, "partner": 2}


def batch_dates(start: date, end: date, batches: int, source: str) -> list[date]:
    """Batch ids of a source: evenly spread over the window, the last one at its end."""
    span = (end - start).days
    off = timedelta(days=BATCH_OFFSET_DAYS[source])
    out = [
        start + timedelta(days=round(span * (k + 1) / batches)) + off for k in range(batches - 1)
    ]
    out.append(end + off)
    return out


class _File:
    __slots__ = ("fh", "lines", "rows", "writer")

    def __init__(self, path: Path, header: tuple[str, ...]) -> None:
        self.fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.writer = csv.writer(self.fh, lineterminator="\n")
        self.lines = 0
        self.rows = 0
        if header:
            self.writer.writerow(header)
            self.lines = 1


class Landing:
    """All landing files of the feed sources, open for the whole run."""

    def __init__(self, out_dir: Path, start: date, end: date, batches: int) -> None:
        self.out_dir = out_dir
        self.dates = {s: batch_dates(start, end, batches, s) for s in SOURCES}
        self.ids = {s: [d.isoformat() for d in ds] for s, ds in self.dates.items()}
        self.files: dict[tuple[str, int, str], _File] = {}
        for (source, name), header in HEADERS.items():
            for b, bid in enumerate(self.ids[source]):
                folder = out_dir / source / bid
                folder.mkdir(parents=True, exist_ok=True)
                self.files[(source, b, name)] = _File(folder / name, header)

    def batch_of(self, source: str, day: date) -> int:
        """The first batch whose date is on or after the day the record became known."""
        ds = self.dates[source]
        return min(bisect_left(ds, day), len(ds) - 1)

    def csv(self, source: str, b: int, name: str, row: list[str]) -> int:
        f = self.files[(source, b, name)]
        f.writer.writerow(row)
        f.lines += 1
        f.rows += 1
        return f.lines

    def json(self, source: str, b: int, name: str, obj: dict[str, Any]) -> int:
        return self.text(source, b, name, json.dumps(obj, ensure_ascii=False))

    def text(self, source: str, b: int, name: str, line: str) -> int:
        f = self.files[(source, b, name)]
        f.fh.write(line + "\n")
        f.lines += 1
        f.rows += 1
        return f.lines

    def raw(self, source: str, b: int, name: str, data: bytes) -> int:
        """A line of raw bytes (used for the deliberately mis-encoded rows)."""
        f = self.files[(source, b, name)]
        f.fh.flush()
        f.fh.buffer.write(data + b"\n")
        f.lines += 1
        f.rows += 1
        return f.lines

    def close(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (source, b, name), f in self.files.items():
            f.fh.close()
            counts[f"{source}/{self.ids[source][b]}/{name}"] = f.rows
        for source in SOURCES:
            for bid in self.ids[source]:
                (self.out_dir / source / bid / "_SUCCESS").write_bytes(b"")
        return dict(sorted(counts.items()))


class Table:
    """A plain CSV output file (catalog snapshot or truth)."""

    def __init__(self, path: Path, header: tuple[str, ...]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = _File(path, header)

    def write(self, row: list[str] | tuple[str, ...]) -> None:
        self._f.writer.writerow(row)
        self._f.rows += 1

    @property
    def rows(self) -> int:
        return self._f.rows

    def close(self) -> None:
        self._f.fh.close()
