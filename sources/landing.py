"""The landing zone: `<landing>/<source>/<batch_id>/<files>`, complete once `_SUCCESS` exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sources import SOURCES

SUCCESS_MARKER = "_SUCCESS"


@dataclass(frozen=True, order=True)
class Batch:
    source: str
    batch_id: str
    path: Path


def complete_batches(landing_dir: Path, source: str) -> list[Batch]:
    """Complete batches of one source in processing order (lexical order of batch_id)."""
    folder = landing_dir / source
    if not folder.is_dir():
        return []
    return [
        Batch(source, entry.name, entry)
        for entry in sorted(folder.iterdir(), key=lambda p: p.name)
        if entry.is_dir() and (entry / SUCCESS_MARKER).exists()
    ]


def all_complete_batches(landing_dir: Path) -> list[Batch]:
    """Every complete batch; the catalog first, since derivation reads it for everything else."""
    order = ["catalog", *[name for name in SOURCES if name != "catalog"]]
    return [batch for source in order for batch in complete_batches(landing_dir, source)]
