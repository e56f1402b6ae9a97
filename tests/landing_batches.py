"""Hand-written landing-zone batches for tests: CSV text from rows, and a complete batch folder.

A batch is complete when its `_SUCCESS` marker is there (sources/landing.py); every story that
writes its own feeds writes them this way, so they are written alike.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def csv_text(rows: Iterable[Mapping[str, str]], header: Sequence[str]) -> str:
    """CSV with `header`, one line per row (`\\n` line ends); a column a row lacks is empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in header})
    return out.getvalue()


def write_batch(root: Path, source: str, batch_id: str, files: Mapping[str, bytes | str]) -> Path:
    """A complete batch `root/source/batch_id`: each file as given (text as UTF-8), then its
    `_SUCCESS` marker. Returns the batch's folder."""
    folder = root / source / batch_id
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(
            content.encode("utf-8") if isinstance(content, str) else content
        )
    (folder / "_SUCCESS").touch()
    return folder
