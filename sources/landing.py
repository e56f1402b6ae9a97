"""The landing zone: `<landing>/<source>/<batch_id>/<files>`, complete once `_SUCCESS` exists.

Batch ids are folder names, and they travel far (raw partition names, Dagster partitions, the
catalog preview's dbt variable), so they must match BATCH_ID_PATTERN; everything that takes a
batch id from outside checks it with `batch_id_problem` / `require_batch_id`. A complete batch
folder whose name is not a valid id is still listed (so that its load fails, one clear line,
and is recorded in consent.ingest_batches), unless the name cannot even be stored or shown
(control characters, undecodable bytes): such a folder is reported in the log and skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sources import SOURCES

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
BATCH_ID_MAX_LENGTH = 64
# letters, digits and - _ . : + (ISO dates and timestamps such as 2024-06-01T10:00:00+03:00),
# starting with a letter or digit; no quotes, spaces, slashes, and no '..' anywhere
BATCH_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:+-]{{0,{BATCH_ID_MAX_LENGTH - 1}}}")
BATCH_ID_RULE = (
    f"letters, digits and - _ . : + only, starting with a letter or digit, no '..', "
    f"at most {BATCH_ID_MAX_LENGTH} characters"
)


def batch_id_problem(batch_id: str) -> str | None:
    """Why `batch_id` is not a valid batch id (one line, the id shown escaped), or None."""
    if BATCH_ID_PATTERN.fullmatch(batch_id) and ".." not in batch_id:
        return None
    shown = ascii(batch_id[:80] + ("..." if len(batch_id) > 80 else ""))
    return f"batch id {shown} is not valid ({BATCH_ID_RULE})"


def require_batch_id(batch_id: str) -> str:
    """`batch_id` if valid; otherwise BatchFileError with the one-line reason."""
    problem = batch_id_problem(batch_id)
    if problem:
        from sources.readers import BatchFileError

        raise BatchFileError(problem)
    return batch_id


def storable_name(name: str) -> bool:
    """Can a (possibly invalid) folder name be recorded and shown as it is? (printable text,
    nothing Dagster refuses in a partition key)."""
    return name.isprintable() and "..." not in name and len(name) <= 255


@dataclass(frozen=True, order=True)
class Batch:
    source: str
    batch_id: str
    path: Path


def _is_complete(entry: Path) -> bool:
    """A batch folder (or a link to one: refused when loaded) holding _SUCCESS (even a link)."""
    marker = entry / SUCCESS_MARKER
    return entry.is_dir() and (marker.exists() or marker.is_symlink())


def complete_batches(landing_dir: Path, source: str) -> list[Batch]:
    """Complete batches of one source in processing order (lexical order of batch_id).

    Folders that are symbolic links, or have a name that is not a valid batch id, are listed
    too: loading them fails (sources.loader.check_batch_files) and records why.
    """
    folder = landing_dir / source
    if not folder.is_dir():
        return []
    batches = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not _is_complete(entry):
            continue
        if not storable_name(entry.name):
            log.warning(
                "skipped landing folder %s: %s",
                ascii(str(entry)),
                batch_id_problem(entry.name),
            )
            continue
        batches.append(Batch(source, entry.name, entry))
    return batches


def all_complete_batches(landing_dir: Path) -> list[Batch]:
    """Every complete batch; the catalog first, since derivation reads it for everything else."""
    order = ["catalog", *[name for name in SOURCES if name != "catalog"]]
    return [batch for source in order for batch in complete_batches(landing_dir, source)]
