"""DDL for the landing side of the database: raw tables, the batch registry and dq_rejections.

Raw tables keep every value exactly as the file had it (text), so a staging bug can always be
fixed and replayed. Each is LIST-partitioned by batch: re-loading a batch truncates only its own
partition, validation scans only the new rows, and old batches can be detached for retention.
"""

from __future__ import annotations

import hashlib
import re

import psycopg
from psycopg import sql

from sources import SOURCES
from sources.api_store import API_DDL
from sources.spec import FileSpec

RAW_SCHEMA = "raw"
CONSENT_SCHEMA = "consent"
META_COLUMNS = ("_batch_id", "_file_name", "_line_number")

_CONSENT_DDL = """
create schema if not exists consent;

create table if not exists consent.ingest_batches (
    source        text        not null,
    batch_id      text        not null,
    status        text        not null check (status in ('loaded', 'failed')),
    rows_read     bigint      not null default 0,
    rows_loaded   bigint      not null default 0,
    rows_rejected bigint      not null default 0,
    files         jsonb       not null default '[]',
    error         text,
    started_at    timestamptz not null,
    finished_at   timestamptz not null,
    primary key (source, batch_id)
);
-- when the batch arrived: its _SUCCESS file's time, part of the landing zone (so re-loads agree);
-- a revocation whose receipt time is unreadable or in the future takes effect from it
alter table consent.ingest_batches add column if not exists arrived_at timestamptz;
comment on table consent.ingest_batches is
    'One row per landing-zone batch seen by ingestion: what was read, loaded and rejected.';

create table if not exists consent.dq_rejections (
    rejection_id bigint generated always as identity primary key,
    source       text        not null,
    batch_id     text        not null,
    file_name    text        not null,
    line_number  bigint,
    record_id    text,
    field        text,
    rule         text        not null,
    severity     text        not null check (severity in ('reject', 'warn')),
    reason       text        not null,
    rejected_at  timestamptz not null default now(),
    stage        text        not null default 'ingest',
    raw_record   jsonb
);
create index if not exists dq_rejections_batch
    on consent.dq_rejections (source, batch_id, stage);
comment on table consent.dq_rejections is
    'Every rejected or suspicious input row with its rule; reason never quotes personal data.';
-- Depersonalisation (DESIGN rule 8; written by assets/depersonalisation.py): one audit row per
-- executed client (ids, dates and counts only) and the source records it covered, which keep
-- their client in identity resolution. Created here so report_depersonalisation can be built,
-- and identity can read the list, before the first execution.
create table if not exists consent.depersonalisation_audit (
    client_id          text        primary key,
    request_ids        text[]      not null,
    received_at        timestamptz,
    allowed_from       timestamptz,
    executed_at        timestamptz not null,
    source_records     integer     not null,
    rows_pseudonymised jsonb       not null default '{}',
    reapplied_at       timestamptz,
    rows_reapplied     jsonb       not null default '{}'
);
create table if not exists consent.depersonalised_records (
    source           text        not null,
    source_record_id text        not null,
    client_id        text        not null,
    pseudonym        text        not null,
    executed_at      timestamptz not null,
    primary key (source, source_record_id)
);

-- The Russian production calendar (filled by assets/calendar.py from the holidays package).
create table if not exists consent.production_calendar (
    day              date primary key,
    is_working_day   boolean not null,
    working_day_seq  integer not null,
    holiday_name     text
);

comment on column consent.dq_rejections.raw_record is
    'The row as read (personal data: DPO only), kept so a doubtful revocation is still honoured.';
"""

_RAW_DDL = """
create schema if not exists raw;

-- E.164 form of every distinct phone string seen in any feed (filled with `phonenumbers`).
create table if not exists raw.phone_numbers (
    phone_key  text primary key,
    phone_e164 text,
    is_valid   boolean not null,
    number_type text
);
"""


def partition_name(table: str, batch_id: str) -> str:
    """A readable partition name that stays within PostgreSQL's 63-byte identifier limit."""
    name = f"{table}__{batch_id}"
    if len(name.encode()) <= 57:  # room for the line counter's "__line" suffix
        return name
    digest = hashlib.sha1(batch_id.encode()).hexdigest()[:12]
    return f"{table}__{digest}"


def raw_table_ddl(spec: FileSpec) -> sql.Composed:
    columns = [sql.SQL("{} text").format(sql.Identifier(name)) for name in spec.column_names]
    columns += [
        sql.SQL("_batch_id text not null"),
        sql.SQL("_file_name text not null"),
        sql.SQL("_line_number bigint not null"),
    ]
    if spec.file_format == "jsonl" and spec.table == "web_events":
        columns.append(sql.SQL("_payload jsonb"))
    return sql.SQL("create table if not exists {}.{} ({}) partition by list (_batch_id)").format(
        sql.Identifier(RAW_SCHEMA), sql.Identifier(spec.table), sql.SQL(", ").join(columns)
    )


# Identity resolution's outputs (filled by assets/identity). A pipeline run writes them into its
# generation (pipelines/publication.py) and consent.* shows the published ones; in `consent`
# itself they are created as empty tables on a database that has none yet, so that every
# downstream model can be built (and every question answered: no client) before the first
# resolution has run.
IDENTITY_DDL = {
    "client_xref": """
create table {table} (
    source            text not null,
    source_record_id  text not null,
    client_id         text not null,
    match_probability double precision,
    record_hash       text,
    primary key (source, source_record_id)
);
create index on {table} (client_id);
""",
    "golden_client": """
create table {table} (
    client_id           text primary key,
    last_name           text,
    first_name          text,
    middle_name         text,
    birth_date          date,
    phone               text,
    email               text,
    source_record_count integer,
    updated_at          timestamptz
);
""",
    "identity_ambiguous_matches": """
create table {table} (
    source_l           text,
    source_record_id_l text,
    client_id_l        text,
    source_r           text,
    source_record_id_r text,
    client_id_r        text,
    match_probability  double precision,
    same_client        boolean
);
""",
}


def relation_exists(conn: psycopg.Connection, schema: str, name: str) -> bool:
    """Whether `schema.name` names a table, view or other relation."""
    found = conn.execute(
        "select to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, name)
    ).fetchone()[0]
    return found is not None


#: the relations a DDL script creates "if not exists" (tables and indexes)
_CREATED = re.compile(
    r"create\s+(?:unique\s+)?(?:table|index)\s+if\s+not\s+exists\s+(?:(\w+)\.)?(\w+)",
    re.IGNORECASE,
)


def ddl_applied(conn: psycopg.Connection, ddl: str, schema: str = "consent") -> bool:
    """Whether every table and index `ddl` creates "if not exists" exists already.

    Why: CREATE INDEX IF NOT EXISTS takes a SHARE lock on its table even when the index is
    there, held to the end of the transaction; run on every publication, it made writers of
    that table (the API's access log) wait behind a publication that waited for them.
    """
    names = [(m.group(1) or schema, m.group(2)) for m in _CREATED.finditer(ddl)]
    return bool(names) and all(relation_exists(conn, s, n) for s, n in names)


def create_identity_tables(
    conn: psycopg.Connection, schema: str, only: list[str] | tuple[str, ...] | None = None
) -> list[str]:
    """Create the identity tables missing in `schema` (all, or those in `only`); return them."""
    created = []
    for name, ddl in IDENTITY_DDL.items():
        if only is not None and name not in only:
            continue
        if not relation_exists(conn, schema, name):
            table = sql.Identifier(schema, name).as_string(conn)
            conn.execute(ddl.format(table=table))
            created.append(name)
    return created


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create everything ingestion writes to; safe to call on every run and from two processes."""
    with conn.transaction():
        # serialise concurrent first runs: CREATE ... IF NOT EXISTS is not race-free
        conn.execute("select pg_advisory_xact_lock(hashtext('consent-center:schema'))")
        conn.execute(_CONSENT_DDL)
        if not ddl_applied(conn, API_DDL):
            conn.execute(API_DDL)
        create_identity_tables(conn, CONSENT_SCHEMA)
        conn.execute(_RAW_DDL)
        for source in SOURCES.values():
            for spec in source.tables:
                conn.execute(raw_table_ddl(spec))
                conn.execute(
                    sql.SQL("comment on table {}.{} is {}").format(
                        sql.Identifier(RAW_SCHEMA),
                        sql.Identifier(spec.table),
                        sql.Literal(f"Raw rows of {source.name}/{spec.file_name}, as in the file"),
                    )
                )


def reset_partition(conn: psycopg.Connection, spec: FileSpec, batch_id: str) -> sql.Identifier:
    """Give the batch an empty partition of its own (created, or truncated on a re-load).

    The partition's lineage columns default to its batch, its file and a line counter, so a
    clean file can be COPY-ed into it verbatim, as fast as PostgreSQL reads CSV.
    """
    name = partition_name(spec.table, batch_id)
    ident = sql.Identifier(RAW_SCHEMA, name)
    sequence = sql.Identifier(RAW_SCHEMA, _bounded(f"{name}__line"))
    exists = conn.execute("select to_regclass(%s)", (f'{RAW_SCHEMA}."{name}"',)).fetchone()[0]
    if exists:
        conn.execute(sql.SQL("truncate {}").format(ident))
    else:
        conn.execute(
            sql.SQL("create table {} partition of {} for values in ({})").format(
                ident, sql.Identifier(RAW_SCHEMA, spec.table), sql.Literal(batch_id)
            )
        )
        conn.execute(
            sql.SQL("create sequence {} owned by {}.{}._line_number").format(
                sequence, sql.Identifier(RAW_SCHEMA), sql.Identifier(name)
            )
        )
        conn.execute(
            sql.SQL(
                "alter table {} alter column _batch_id set default {}, "
                "alter column _file_name set default {}, "
                "alter column _line_number set default nextval({})"
            ).format(
                ident,
                sql.Literal(batch_id),
                sql.Literal(spec.file_name),
                sql.Literal(f'{RAW_SCHEMA}."{_bounded(f"{name}__line")}"'),
            )
        )
    return ident


def restart_line_counter(conn: psycopg.Connection, partition: sql.Identifier, first: int) -> None:
    """The next row COPY-ed into the partition without a line number gets `first`."""
    name = partition.as_string(conn).split(".", 1)[1].strip('"')
    conn.execute(
        sql.SQL("alter sequence {} restart with {}").format(
            sql.Identifier(RAW_SCHEMA, _bounded(f"{name}__line")), sql.Literal(first)
        )
    )


def _bounded(name: str) -> str:
    if len(name.encode()) <= 63:
        return name
    return name[:50] + hashlib.sha1(name.encode()).hexdigest()[:12]
