"""The change feed (DESIGN section 6): one row per status change of golden_consent.

Call-centre, e-mail and SMS systems read `consent.consent_change` after the last `change_id`
they saw (ids only grow). This asset publishes the run (pipelines/publication.py): in one
transaction it compares the run's golden_consent with the one published so far, appends the
differences, and points consent.* at the run's generation, so a change is neither lost nor
repeated when a run is retried, and a reader never sees a golden table the feed has not told.

The changes are also written as JSON lines to CONSENT_HOME/reports/changes/ for systems that
take files: `changes-<first id>-<last id>.jsonl`, every change_id in exactly one file. The table
is the truth and the files follow it: on every run, after the commit, any range of change ids
without its file (a run killed between the commit and the file, a file deleted or cut short) is
written again from the table. Files are written atomically (a temporary file in the same folder,
fsync, rename), so a reader sees a whole file or none; the files written are recorded in
`consent.consent_change_files` (range, size, sha256), which is how a missing or truncated one is
found without reading them all.
"""

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset

from pipelines.publication import (
    IDENTITY_TABLES,
    INTERNAL_POINTERS,
    Generation,
    consent_models,
    publish,
)
from pipelines.resources import ConsentCenterResource, pause_point

CHANGE_KEY = AssetKey(["consent", "consent_change"])

DDL = """
create table if not exists consent.consent_change (
    change_id       bigint generated always as identity primary key,
    client_id       text not null,
    purpose         text not null,
    channel         text not null,
    partner_code    text not null,
    old_status      text not null,
    new_status      text not null,
    allowed         boolean not null,
    valid_from      timestamptz,
    valid_until     timestamptz,
    basis_event_ids text[],
    changed_at      timestamptz not null default now()
);
"""
FILES_DDL = """
create table if not exists consent.consent_change_files (
    first_change_id bigint primary key,
    last_change_id  bigint not null,
    changes         bigint not null,
    file_name       text not null,
    bytes           bigint not null,
    sha256          text not null,
    written_at      timestamptz not null default now()
);
comment on table consent.consent_change_files is
    'Change-feed files written under CONSENT_HOME/reports/changes (internal).';
"""
FILE_NAME = re.compile(r"^changes-(\d{12})-(\d{12})\.jsonl$")
FETCH_ROWS = 10_000


@dataclass(frozen=True)
class ChangeFile:
    path: Path
    first: int
    last: int
    changes: int
    bytes: int
    sha256: str


def change_file_name(first: int, last: int) -> str:
    return f"changes-{first:012d}-{last:012d}.jsonl"


def _write(conn: psycopg.Connection, folder: Path, first: int, last: int) -> ChangeFile:
    """Write the changes first..last from the table: temporary file, fsync, rename, fsync folder."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / change_file_name(first, last)
    temporary = folder / f".{path.name}.{os.getpid()}.tmp"
    digest, size, changes = hashlib.sha256(), 0, 0
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            # a server-side cursor, not COPY: COPY's text format would double JSON's backslashes
            with conn.transaction(), conn.cursor(name="change_feed_file") as cursor:
                cursor.itersize = FETCH_ROWS
                cursor.execute(
                    "select row_to_json(c)::text from consent.consent_change c "
                    "where change_id between %s and %s order by change_id",
                    (int(first), int(last)),
                )
                for (line,) in cursor:
                    data = line.encode("utf-8") + b"\n"
                    out.write(data)
                    digest.update(data)
                    size += len(data)
                    changes += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_folder(folder)
    return ChangeFile(path, first, last, changes, size, digest.hexdigest())


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_change_file(conn: psycopg.Connection, folder: Path, first: int, last: int) -> Path:
    """Write (or write again) the file of changes first..last, atomically."""
    return _write(conn, folder, first, last).path


def _register(conn: psycopg.Connection, written: ChangeFile) -> None:
    conn.execute(
        "insert into consent.consent_change_files as f "
        "(first_change_id, last_change_id, changes, file_name, bytes, sha256) "
        "values (%s, %s, %s, %s, %s, %s) on conflict (first_change_id) do update set "
        "last_change_id = excluded.last_change_id, changes = excluded.changes, "
        "file_name = excluded.file_name, bytes = excluded.bytes, sha256 = excluded.sha256, "
        "written_at = now()",
        (
            written.first,
            written.last,
            written.changes,
            written.path.name,
            written.bytes,
            written.sha256,
        ),
    )


def _range_in_table(conn: psycopg.Connection, low: int, high: int | None):
    """(first id, last id, count) of the changes in low..high (high None: no upper bound)."""
    query = "select min(change_id), max(change_id), count(*) from consent.consent_change "
    if high is None:
        return conn.execute(query + "where change_id >= %s", (low,)).fetchone()
    return conn.execute(query + "where change_id between %s and %s", (low, high)).fetchone()


def sync_change_files(conn: psycopg.Connection, folder: Path) -> list[Path]:
    """Make the files cover every change_id of the table exactly once; return those written.

    Cost: one stat per recorded file and one indexed range query per gap between them; only the
    files found missing, truncated or never written are written (from the table).
    """
    with conn.transaction():
        conn.execute(DDL)
        conn.execute(FILES_DDL)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for leftover in folder.glob(".changes-*.tmp"):  # a writer killed mid-file (we hold the lock)
        with contextlib.suppress(OSError):
            leftover.unlink()
    written: list[Path] = []

    def write(first: int, last: int) -> None:
        done = _write(conn, folder, first, last)
        with conn.transaction():
            _register(conn, done)
        written.append(done.path)

    recorded = conn.execute(
        "select first_change_id, last_change_id, file_name, bytes from "
        "consent.consent_change_files order by first_change_id"
    ).fetchall()
    ranges = []
    for first, last, name, size in recorded:
        path = folder / name
        try:
            intact = path.stat().st_size == size
        except OSError:
            intact = False
        if not intact:
            write(first, last)
        ranges.append((first, last))

    # files on disk not recorded: written before a crash, or before the files were recorded
    for path in sorted(folder.glob("changes-*.jsonl")):
        match = FILE_NAME.match(path.name)
        if not match:
            continue
        first, last = int(match[1]), int(match[2])
        if any(first <= b and a <= last for a, b in ranges):
            continue  # recorded already (or overlapping a recorded file: not ours to judge)
        low, high, count = _range_in_table(conn, first, last)
        if count and (low, high) == (first, last):
            write(first, last)  # rewritten from the table: a file cut short is made whole
            ranges.append((first, last))
    ranges.sort()

    # change ids in no file at all: the gaps between the recorded ranges, and after the last
    low = 1
    for first, last in [*ranges, (None, None)]:
        high = None if first is None else first - 1
        if high is None or high >= low:
            gap_first, gap_last, count = _range_in_table(conn, low, high)
            if count:
                write(gap_first, gap_last)
        if last is not None:
            low = max(low, last + 1)
    return written


def _published_deps() -> list[AssetKey]:
    """Everything a publication shows: the consent models, identity, the answering layer's
    intermediate relations (pipelines/publication.py)."""
    return [
        *(AssetKey(["consent", name]) for name in consent_models()),
        *(AssetKey(["consent", name]) for name in IDENTITY_TABLES),
        *(AssetKey(["staging", name]) for name in INTERNAL_POINTERS.values()),
    ]


@multi_asset(
    name="consent_change_feed",
    specs=[
        AssetSpec(
            CHANGE_KEY,
            deps=_published_deps(),
            description="Publishes the run (identity, events, history, golden consent and the "
            "reports, all at once) and its change feed of golden_consent for call-centre, "
            "e-mail and SMS systems.",
            group_name="publish",
            kinds={"postgres"},
        )
    ],
)
def consent_change_feed(context: AssetExecutionContext, consent_center: ConsentCenterResource):
    folder = consent_center.settings().reports_dir / "changes"
    generation = Generation.of_run(context.run_id)
    with consent_center.connect(autocommit=True) as conn:
        published = publish(conn, generation, run_id=context.run_id, as_of=consent_center.as_of())
        pause_point("change_feed_committed")  # test hook: a kill here loses no file for good
        written = sync_change_files(conn, folder)
    count, first, last = published.changes, published.first_change_id, published.last_change_id
    with consent_center.connect() as conn:
        (clients,) = conn.execute(
            "select count(distinct client_id) from consent.consent_change "
            "where change_id between %s and %s",
            (first or 0, last or 0),
        ).fetchone()
    taken = published.identity_taken_over
    context.log.info(
        f"generation {generation.name} published: {count} consent changes"
        + (f"; identity taken over: {', '.join(taken)}" if taken else "")
        + (f"; files written: {', '.join(p.name for p in written)}" if written else "")
    )
    path = folder / change_file_name(first, last) if count else None
    return MaterializeResult(
        metadata={
            "generation": generation.name,
            "changes": count,
            "clients_changed": clients,
            "first_change_id": first or 0,
            "last_change_id": last or 0,
            "file": str(path) if path and path.exists() else "",
            "files_written": len(written),
            "generations_retired": len(published.retired),
        }
    )
