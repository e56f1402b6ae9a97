"""Load one landing-zone batch into its raw partitions, in one transaction, with bulk COPY.

The contract: every physical data line of every file ends up either as a raw row or as a
`consent.dq_rejections` row; re-loading a batch replaces it (never duplicates it); a crash
mid-batch rolls back to nothing, so the next run simply loads it again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from sources import SOURCES, web
from sources.readers import (
    BatchFileError,
    Chunk,
    LineProblem,
    iter_chunks,
    legacy_encoding,
    parse_csv_chunk,
    read_header,
    split_line,
)
from sources.schema import RAW_SCHEMA, reset_partition, restart_line_counter
from sources.spec import FileSpec, Rule, SourceSpec
from sources.validation import check_rows, normalise_codes


@dataclass
class FileResult:
    file_name: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0


@dataclass
class BatchResult:
    source: str
    batch_id: str
    status: str = "loaded"
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(
            rows_read=self.rows_read,
            rows_loaded=self.rows_loaded,
            rows_rejected=self.rows_rejected,
        )
        return data


def check_batch_files(source: SourceSpec, batch_dir: Path) -> None:
    """Fail fast, naming the file, before anything is written.

    The batch folder's name must be a valid batch id (sources.landing.BATCH_ID_PATTERN), and
    nothing may lead out of the landing zone: the source folder, the batch folder and its files
    must not be symbolic links, and every file must really lie in the batch folder.
    """
    from sources.landing import batch_id_problem

    where = f"{source.name} batch {batch_dir.name}"
    problem = batch_id_problem(batch_dir.name)
    if problem:
        raise BatchFileError(f"{source.name} batch folder refused: {problem}")
    if batch_dir.parent.name == source.name and batch_dir.parent.is_symlink():
        raise BatchFileError(
            f"{where}: the source folder {batch_dir.parent} is a symbolic link; refused"
        )
    if batch_dir.is_symlink():
        raise BatchFileError(f"{where}: the batch folder {batch_dir} is a symbolic link; refused")
    real_dir = batch_dir.resolve()
    for spec in [*source.files, None]:
        path = batch_dir / (spec.file_name if spec else "_SUCCESS")
        if path.is_symlink():
            raise BatchFileError(f"{where}: {path} is a symbolic link; refused")
        if path.exists() and path.resolve().parent != real_dir:
            raise BatchFileError(f"{where}: {path} lies outside its batch folder; refused")
    for spec in source.files:
        path = batch_dir / spec.file_name
        if not path.exists():
            if spec.optional:
                continue
            raise BatchFileError(f"{source.name} batch {batch_dir.name}: missing file {path}")
        if not path.is_file():
            raise BatchFileError(f"{source.name} batch {batch_dir.name}: {path} is not a file")
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            raise BatchFileError(
                f"{source.name} batch {batch_dir.name}: cannot read {path}: {error.strerror}"
            ) from error


def load_batch(
    conn: psycopg.Connection,
    source_name: str,
    batch_dir: Path,
    on_progress: Callable[[int], None] | None = None,
    batch_id: str | None = None,
) -> BatchResult:
    """Load (or re-load) one complete batch; raises BatchFileError if a file is unusable.

    The batch id is the folder's name unless given (catalog previews load under their own id).
    """
    source = SOURCES[source_name]
    batch_id = batch_id or batch_dir.name
    result = BatchResult(source=source_name, batch_id=batch_id)
    started = time.perf_counter()
    started_at = conn.execute("select now()").fetchone()[0]
    arrived_at = batch_arrival(batch_dir, default=started_at)
    try:
        check_batch_files(source, batch_dir)
        with conn.transaction():
            conn.execute(
                "delete from consent.dq_rejections where source = %s and batch_id = %s "
                "and stage = 'ingest'",
                (source_name, batch_id),
            )
            partitions = {
                spec.table: reset_partition(conn, spec, batch_id) for spec in source.tables
            }
            for spec in source.files:
                path = batch_dir / spec.file_name
                if not path.exists():
                    continue
                if spec.file_format == "jsonl":
                    file_result = _load_web_events(
                        conn, path, batch_id, partitions, arrived_at, on_progress
                    )
                else:
                    file_result = _load_csv(
                        conn,
                        source,
                        spec,
                        path,
                        batch_id,
                        partitions[spec.table],
                        arrived_at,
                        on_progress,
                    )
                result.files.append(file_result)
                # test hook: a kill here leaves the batch's transaction open, half loaded
                _pause_point("batch_file_loaded")
            result.seconds = time.perf_counter() - started
            _register(conn, result, started_at, arrived_at)
    except Exception as error:
        if conn.closed or conn.broken:
            raise  # the server is gone: nothing can be recorded, the next run loads it again
        result.status = "failed"
        if not isinstance(error, BatchFileError):
            # the message of a database error may quote a value of the file: name the kind only
            code = getattr(getattr(error, "diag", None), "sqlstate", None)
            error = BatchFileError(
                f"{source_name} batch {batch_id}: could not be loaded "
                f"({type(error).__name__}{f', SQLSTATE {code}' if code else ''})"
            )
        result.error = str(error)
        result.seconds = time.perf_counter() - started
        with conn.transaction():
            _register(conn, result, started_at, arrived_at)
        raise error from None
    return result


def _pause_point(step: str) -> None:
    """pipelines.resources.pause_point (a test hook), imported only when a test asks for it."""
    if os.environ.get("CONSENT_TEST_PAUSE_AT") == step:
        from pipelines.resources import pause_point

        pause_point(step)


def batch_arrival(batch_dir: Path, default: datetime) -> datetime:
    """When the batch arrived: the modification time of its `_SUCCESS` marker.

    It belongs to the landing zone, so every re-load of the batch agrees on it (the published
    state stays a function of the input, DESIGN section 12).
    """
    try:
        return datetime.fromtimestamp((batch_dir / "_SUCCESS").stat().st_mtime, UTC)
    except OSError:
        return default


def _register(
    conn: psycopg.Connection, result: BatchResult, started_at, arrived_at: datetime
) -> None:
    conn.execute(
        """
        insert into consent.ingest_batches as b
            (source, batch_id, status, rows_read, rows_loaded, rows_rejected, files, error,
             started_at, finished_at, arrived_at)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), %s)
        on conflict (source, batch_id) do update set
            status = excluded.status, rows_read = excluded.rows_read,
            rows_loaded = excluded.rows_loaded, rows_rejected = excluded.rows_rejected,
            files = excluded.files, error = excluded.error,
            started_at = excluded.started_at, finished_at = excluded.finished_at,
            arrived_at = excluded.arrived_at
        """,
        (
            result.source,
            result.batch_id,
            result.status,
            result.rows_read,
            result.rows_loaded,
            result.rows_rejected,
            json.dumps([asdict(f) for f in result.files]),
            result.error,
            started_at,
            arrived_at,
        ),
    )


def _record_problems(
    conn: psycopg.Connection,
    source: str,
    batch_id: str,
    file_name: str,
    problems: list[LineProblem],
    record_id_of: Callable[[str], str | None],
) -> None:
    if not problems:
        return
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy consent.dq_rejections (source, batch_id, file_name, line_number, record_id, "
            "field, "
            "rule, severity, reason, stage, raw_record) from stdin"
        ) as copy,
    ):
        for problem in problems:
            copy.write_row(
                (
                    source,
                    batch_id,
                    file_name,
                    problem.line_number,
                    record_id_of(problem.text),
                    problem.field,
                    problem.rule.value,
                    problem.severity,
                    problem.reason,
                    "ingest",
                    json.dumps({"line": problem.text}, ensure_ascii=False),
                )
            )


def _csv_record_id(spec: FileSpec, header: list[str]) -> Callable[[str], str | None]:
    """The record id of a line that did not load, read by the header's column positions.

    Never "the first field": with columns in another order that could be a person's name.
    """

    def record_id_of(text: str) -> str | None:
        fields = split_line(text, len(header))
        record_id = spec.record_id_of(dict(zip(header, fields, strict=False)))
        # an id that swallowed the line (a stray quote) would carry the rest of the record
        return record_id if record_id and len(record_id) <= 100 and "\n" not in record_id else None

    return record_id_of


def _reconcile_damaged_lines(
    conn: psycopg.Connection,
    partition: sql.Identifier,
    spec: FileSpec,
    source: str,
    batch_id: str,
    damaged: dict[int, str],
) -> None:
    """Lines whose bytes were repaired: a stop row stays (warned), any other row is rejected.

    A revocation is honoured whatever its unneeded bytes hold (DESIGN section 12); a grant or a
    person read from damaged bytes is not trusted.
    """
    if not damaged:
        return
    stop = sql.SQL(spec.stop_rows.when) if spec.stop_rows else sql.SQL("false")
    conn.execute(
        sql.SQL(
            """
            with damaged (line, reason) as (
                select * from unnest(%s::bigint[], %s::text[])
            ), hit as (
                select distinct on (t._line_number) t._line_number as line, d.reason,
                       coalesce(({stop}), false) as is_stop,
                       nullif(({record_id})::text, '') as record_id,
                       to_jsonb(t) - '_batch_id' - '_file_name' - '_line_number' - '_payload'
                           as raw_record
                from {partition} as t join damaged as d on d.line = t._line_number
                order by t._line_number
            ), recorded as (
                insert into consent.dq_rejections
                    (source, batch_id, file_name, line_number, record_id, field, rule,
                     severity, reason, stage, raw_record)
                select {source}, {batch_id}, {file_name}, line, record_id, null, {rule},
                       case when is_stop then 'warn' else 'reject' end,
                       reason || case when is_stop
                           then '; kept with the bad bytes replaced: it carries a revocation'
                           else '' end,
                       'ingest', raw_record
                from hit
            )
            delete from {partition} as t using hit
            where hit.line = t._line_number and not hit.is_stop
            """
        ).format(
            stop=stop,
            record_id=sql.SQL(spec.record_id),
            partition=partition,
            source=sql.Literal(source),
            batch_id=sql.Literal(batch_id),
            file_name=sql.Literal(spec.file_name),
            rule=sql.Literal(Rule.INVALID_ENCODING.value),
        ),
        (list(damaged), list(damaged.values())),
    )


def _record_legacy_encoding(
    conn: psycopg.Connection, source: str, batch_id: str, file_name: str, encoding: str
) -> None:
    conn.execute(
        "insert into consent.dq_rejections (source, batch_id, file_name, line_number, "
        "record_id, field, rule, severity, reason, stage) "
        "values (%s, %s, %s, null, null, null, %s, 'warn', %s, 'ingest')",
        (
            source,
            batch_id,
            file_name,
            Rule.INVALID_ENCODING.value,
            f"the file is not UTF-8; read as {encoding}",
        ),
    )


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _header_mismatch(expected: list[str], header: list[str]) -> str:
    """What is wrong with a header, naming only what cannot be personal data.

    A file without its header starts with a client's record: its "column names" are a name,
    a birth date, a passport. Missing names come from the contract; unexpected ones are shown
    only when they look like column names.
    """
    missing = [c for c in expected if c not in header]
    unexpected = [c for c in header if c not in expected]
    shown = [c for c in unexpected if _IDENTIFIER.match(c)]
    hidden = len(unexpected) - len(shown)
    parts = [f"missing: {', '.join(missing) or '-'}", f"unexpected: {', '.join(shown) or '-'}"]
    if hidden:
        parts.append(f"{hidden} more unexpected field(s) not shown: they may hold personal data")
    return "; ".join(parts)


def _copy_arrow(conn: psycopg.Connection, target: sql.Identifier, table: pa.Table) -> None:
    """Bulk-load an all-string arrow table: pyarrow writes CSV in C++, COPY reads it."""
    if table.num_rows == 0:
        return
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, write_options=pacsv.WriteOptions(include_header=False))
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in table.column_names)
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("copy {} ({}) from stdin (format csv)").format(target, columns)) as copy,
    ):
        view = buffer.getbuffer()
        step = 8 * 1024 * 1024
        for start in range(0, len(view), step):
            copy.write(view[start : start + step])


def _load_csv(
    conn: psycopg.Connection,
    source: SourceSpec,
    spec: FileSpec,
    path: Path,
    batch_id: str,
    partition: sql.Identifier,
    arrived_at: datetime,
    on_progress: Callable[[int], None] | None,
) -> FileResult:
    result = FileResult(spec.file_name)
    encoding = legacy_encoding(path)
    try:
        header, _ = read_header(path, encoding)
    except (UnicodeDecodeError, StopIteration, csv.Error) as error:
        raise BatchFileError(
            f"{source.name} batch {batch_id}: {path} line 1: header is not readable UTF-8 CSV"
        ) from error
    expected = spec.column_names
    if sorted(header) != sorted(expected):
        raise BatchFileError(
            f"{source.name} batch {batch_id}: {path} line 1: header does not match the contract"
            f" ({_header_mismatch(expected, header)})"
        )
    if encoding != "utf-8":
        _record_legacy_encoding(conn, source.name, batch_id, spec.file_name, encoding)
    if encoding == "utf-8" and _copy_clean_file(conn, path, header, partition):
        result.rows_read = _count(conn, partition)
        if on_progress:
            on_progress(path.stat().st_size)
    else:
        result.rows_read = _load_csv_in_chunks(
            conn, source, spec, path, batch_id, partition, header, encoding, arrived_at, on_progress
        )
    check_rows(conn, partition, spec, source.name, batch_id, arrived_at)
    result.rows_loaded = _count(conn, partition)
    result.rows_rejected = result.rows_read - result.rows_loaded
    return result


def _copy_clean_file(
    conn: psycopg.Connection, path: Path, header: list[str], partition: sql.Identifier
) -> bool:
    """Fast path: COPY the file verbatim; False (and nothing written) if it is not clean.

    Clean means PostgreSQL reads it as CSV (right field count, UTF-8) and every record is one
    physical line, so the partition's line counter numbers rows exactly. Anything else goes
    through the chunked path, which isolates each bad line.
    """
    physical_lines = _count_lines(path)
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in header)
    restart_line_counter(conn, partition, 2)
    try:
        with conn.transaction(), conn.cursor() as cur:
            with (
                cur.copy(
                    sql.SQL("copy {} ({}) from stdin (format csv, header true)").format(
                        partition, columns
                    )
                ) as copy,
                open(path, "rb") as handle,
            ):
                while block := handle.read(8 << 20):
                    copy.write(block)
            if cur.rowcount != physical_lines - 1:
                raise _NotClean
    except (_NotClean, psycopg.errors.DataError, psycopg.errors.BadCopyFileFormat):
        return False
    return True


class _NotClean(Exception):
    pass


def _count_lines(path: Path) -> int:
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (0 if last == b"\n" else 1)


def _load_csv_in_chunks(
    conn: psycopg.Connection,
    source: SourceSpec,
    spec: FileSpec,
    path: Path,
    batch_id: str,
    partition: sql.Identifier,
    header: list[str],
    encoding: str,
    arrived_at: datetime,
    on_progress: Callable[[int], None] | None,
) -> int:
    rows_read = 0
    record_id_of = _csv_record_id(spec, header)
    damaged: dict[int, str] = {}
    for chunk in iter_chunks(path, first_line=2, encoding=encoding):
        table = parse_csv_chunk(chunk, header)
        _record_problems(conn, source.name, batch_id, spec.file_name, chunk.problems, record_id_of)
        rows_read += table.num_rows + _rejected_lines(chunk)
        damaged.update(chunk.damaged_lines)
        _copy_arrow(conn, partition, table)
        if on_progress:
            on_progress(len(chunk.data))
    _reconcile_damaged_lines(conn, partition, spec, source.name, batch_id, damaged)
    return rows_read


def _rejected_lines(chunk: Chunk) -> int:
    return sum(1 for problem in chunk.problems if problem.severity == "reject")


def _count(conn: psycopg.Connection, table: sql.Identifier) -> int:
    return conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()[0]


def _json_path(path: tuple[str, ...]) -> sql.Composable:
    """`j -> 'a' ->> 'b'`: arrow operators, cheaper than #>> paths on every line."""
    *parents, leaf = path
    steps = [sql.SQL(" -> {}").format(sql.Literal(p)) for p in parents]
    return sql.SQL("j{} ->> {}").format(sql.Composed(steps), sql.Literal(leaf))


def _load_web_events(
    conn: psycopg.Connection,
    path: Path,
    batch_id: str,
    partitions: dict[str, sql.Identifier],
    arrived_at: datetime,
    on_progress: Callable[[int], None] | None,
) -> FileResult:
    """JSON lines: COPY the lines verbatim, then parse and flatten them in SQL, set-based."""
    spec = web.EVENTS
    result = FileResult(spec.file_name)
    conn.execute(
        "create temp table if not exists web_lines "
        "(line_number bigint generated always as identity, line text)"
    )
    conn.execute("truncate web_lines")
    conn.execute("alter table web_lines alter column line_number restart with 1")
    # a line nested too deeply for the parser is an invalid line, never a failed batch
    conn.execute(
        "create or replace function pg_temp.try_jsonb(line text) returns jsonb "
        "language plpgsql immutable as "
        "$$ begin return line::jsonb; exception when others then return null; end $$"
    )
    damaged: dict[int, str] = {}
    encoding = legacy_encoding(path)
    if encoding != "utf-8":
        _record_legacy_encoding(conn, "web", batch_id, spec.file_name, encoding)
    for chunk in iter_chunks(path, first_line=1, encoding=encoding):
        damaged.update(chunk.damaged_lines)
        # CSV mode with delimiter and quote bytes that never occur in text: one field per line,
        # taken verbatim (no backslash processing)
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy web_lines (line) from stdin "
                "(format csv, delimiter E'\\x02', quote E'\\x01', escape E'\\x01')"
            ) as copy,
        ):
            # CRLF line ends: the CR is JSON whitespace, but COPY would see two line-end styles
            data = chunk.data.replace(b"\r\n", b"\n")
            copy.write(data if data.endswith(b"\n") else data + b"\n")
        if on_progress:
            on_progress(len(chunk.data))
    result.rows_read = _count(conn, sql.Identifier("web_lines"))

    events = partitions[web.EVENTS.table]
    consents = partitions[web.EVENT_CONSENTS.table]
    event_columns = list(web.EVENT_PATHS)
    insert_events = sql.SQL(
        "insert into {events} ({cols}, _batch_id, _file_name, _line_number, _payload) "
        # `offset 0` keeps the subquery from being inlined: otherwise every reference to `j`
        # re-parses the line
        "select {values}, {batch}, {file}, line_number, j from ({parsed} offset 0) as l "
        "where jsonb_typeof(j) = 'object'"
    )
    fields = dict(
        events=events,
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in event_columns),
        values=sql.SQL(", ").join(_json_path(web.EVENT_PATHS[c]) for c in event_columns),
        batch=sql.Literal(batch_id),
        file=sql.Literal(spec.file_name),
    )
    try:
        # fast path: every line parses, so each is parsed exactly once
        with conn.transaction():
            conn.execute(
                insert_events.format(
                    parsed=sql.SQL("select line_number, line::jsonb as j from web_lines"),
                    **fields,
                )
            )
    except (psycopg.errors.DataError, psycopg.errors.StatementTooComplex):
        conn.execute(
            insert_events.format(
                parsed=sql.SQL(
                    "select line_number, j from ("
                    "select line_number, pg_temp.try_jsonb(line) as j from web_lines offset 0"
                    ") as p where j is not null"
                ),
                **fields,
            )
        )
    # lines that did not become an event: not JSON, not an object, or blank
    conn.execute(
        sql.SQL(
            """
            insert into consent.dq_rejections
                (source, batch_id, file_name, line_number, record_id, field, rule, severity,
                 reason, stage, raw_record)
            select 'web', {batch}, {file}, l.line_number, null, null, {rule}, 'reject',
                   case when coalesce(btrim(l.line), '') = '' then 'blank line'
                        when pg_temp.try_jsonb(l.line) is not null
                            then 'line is JSON but not an object'
                        else 'line is not valid JSON' end,
                   'ingest', jsonb_build_object('line', l.line)
            from web_lines as l
            where not exists (select 1 from {events} e where e._line_number = l.line_number)
            """
        ).format(
            batch=sql.Literal(batch_id),
            file=sql.Literal(spec.file_name),
            rule=sql.Literal(Rule.INVALID_JSON.value),
            events=events,
        )
    )
    # a `consents` member that is not an array makes the whole line doubtful
    conn.execute(
        sql.SQL(
            """
            with bad as (
                select e._line_number, e.event_id
                from {events} e
                where jsonb_typeof(e._payload -> 'consents') not in ('array', 'null')
                   or exists (
                        select 1 from jsonb_array_elements(
                            case when jsonb_typeof(e._payload -> 'consents') = 'array'
                                 then e._payload -> 'consents' else '[]' end) c
                        where jsonb_typeof(c) <> 'object')
            ), rejected as (
                insert into consent.dq_rejections
                    (source, batch_id, file_name, line_number, record_id, field, rule,
                     severity, reason, stage, raw_record)
                select 'web', {batch}, {file}, _line_number, nullif(event_id, ''), 'consents',
                       {rule}, 'reject', 'consents is not a list of objects', 'ingest', null
                from bad
                returning line_number
            )
            delete from {events} e using rejected r where e._line_number = r.line_number
            """
        ).format(
            events=events,
            batch=sql.Literal(batch_id),
            file=sql.Literal(spec.file_name),
            rule=sql.Literal(Rule.UNKNOWN_VALUE.value),
        )
    )
    # codes first (a 'Consent_Withdrawn' is a withdrawal), then lines whose bytes were repaired
    for statement in normalise_codes(events, web.EVENTS, "web", batch_id):
        conn.execute(statement)
    _reconcile_damaged_lines(conn, events, web.EVENTS, "web", batch_id, damaged)
    consent_columns = list(web.CONSENT_PATHS)
    conn.execute(
        sql.SQL(
            "insert into {consents} (event_id, consent_index, {cols}, _batch_id, _file_name, "
            "_line_number) "
            "select e.event_id, (c.ordinality - 1)::text, {values}, {batch}, {file}, "
            "e._line_number "
            "from {events} e, jsonb_array_elements(coalesce(e._payload -> 'consents', '[]')) "
            "with ordinality as c(j, ordinality)"
        ).format(
            consents=consents,
            events=events,
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in consent_columns),
            values=sql.SQL(", ").join(_json_path(web.CONSENT_PATHS[c]) for c in consent_columns),
            batch=sql.Literal(batch_id),
            file=sql.Literal(spec.file_name),
        )
    )
    # a bad consent element rejects its whole line (one record), unless the line is a
    # withdrawal: then only the bad element goes, and the rest of the withdrawal is honoured
    check_rows(conn, consents, web.EVENT_CONSENTS, "web", batch_id, arrived_at)
    conn.execute(
        sql.SQL(
            "delete from {events} as t using consent.dq_rejections r "
            "where r.source = 'web' and r.batch_id = {batch} and r.stage = 'ingest' "
            "and r.severity = 'reject' and r.line_number = t._line_number and not ({stop})"
        ).format(
            events=events, batch=sql.Literal(batch_id), stop=sql.SQL(web.EVENTS.stop_rows.when)
        )
    )
    check_rows(conn, events, web.EVENTS, "web", batch_id, arrived_at)
    conn.execute(
        sql.SQL(
            "delete from {consents} c "
            "where not exists (select 1 from {events} e where e._line_number = c._line_number)"
        ).format(consents=consents, events=events)
    )
    result.rows_loaded = _count(conn, events)
    result.rows_rejected = result.rows_read - result.rows_loaded
    return result


def load_landing_zone(conn: psycopg.Connection, landing: Path) -> list[BatchResult]:
    """Every complete batch of a landing zone, in processing order (scripts and tests)."""
    from sources.landing import all_complete_batches

    return [load_batch(conn, b.source, b.path) for b in all_complete_batches(landing)]


def raw_table(spec: FileSpec) -> sql.Identifier:
    return sql.Identifier(RAW_SCHEMA, spec.table)
