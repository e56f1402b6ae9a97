"""PostgreSQL in and out for identity resolution, in bulk (COPY both ways, no row loops).

In: one set-based query over the dbt staged tables builds the engine's input frame (one row per
person-bearing source record: the newest batch's row per record id, the newest web event's
person per account, CRM contract numbers aggregated with array_agg, a helpdesk letter's quoted
contract as its list), streamed with `COPY (query) TO STDOUT` into pyarrow.

Out: consent.client_xref, consent.golden_client and consent.identity_ambiguous_matches are
replaced in ONE transaction (truncate + COPY), so a crash leaves the previous state. The saved
pair scores (resolve.PairScores: identity.scored_records, identity.pair_scores,
identity.score_calibration) are replaced in the same transaction. They are internal to
identity resolution: record keys and probabilities only, in a schema no reader role is
granted.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from assets.identity.features import INPUT_COLUMNS
from assets.identity.resolve import AMBIGUOUS_COLUMNS, XREF_COLUMNS, PairScores
from sources.schema import create_identity_tables, ensure_schema

#: separator of contract numbers inside one CSV field (never in a contract number)
_LIST_SEP = "\x1f"

#: the original spelling of the names travels next to the matching form (golden_client shows it)
ORIGINAL_NAME_COLUMNS = ["last_name_orig", "first_name_orig", "middle_name_orig"]

RECORD_COLUMNS = [*INPUT_COLUMNS, *ORIGINAL_NAME_COLUMNS]

#: the staging models the frame is built from (the identity asset's upstream)
STAGING_MODELS = [
    "stg_crm__clients",
    "stg_crm__contracts",
    "stg_web__events",
    "stg_helpdesk__tickets",
    "stg_partner__clients",
]

_UTC = "to_char({c} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

# Newest row per record: batches are ordered lexically (DESIGN section 5), then the record's own
# timestamp, then the physical line. Web: the newest event that carries any person field.
RECORDS_SQL = f"""
with crm as (
    select distinct on (source_record_id) *
    from staging.stg_crm__clients
    where source_record_id is not null
    order by source_record_id, batch_id desc, updated_at desc nulls last, line_number desc
),
contracts as (
    -- as dbt's int_crm__contracts (newest batch, then last line), which identity cannot read:
    -- it runs before the consent models are built
    select distinct on (contract_id) contract_id, crm_client_id, contract_number
    from staging.stg_crm__contracts
    where contract_id is not null
    order by contract_id, batch_id desc, line_number desc
),
owned as (
    select crm_client_id,
           array_to_string(
               array_agg(distinct contract_number order by contract_number), E'{_LIST_SEP}'
           ) as contract_numbers
    from contracts
    where contract_number is not null and crm_client_id is not null
    group by crm_client_id
),
web as (
    select distinct on (source_record_id) *
    from staging.stg_web__events
    where source_record_id is not null
    order by source_record_id,
             (coalesce(last_name, first_name, middle_name, phone, email) is null
              and birth_date is null),
             batch_id desc, occurred_at desc nulls last, line_number desc
),
helpdesk as (
    select distinct on (source_record_id) *
    from staging.stg_helpdesk__tickets
    where source_record_id is not null
    order by source_record_id, batch_id desc, received_at desc nulls last, line_number desc
),
partner as (
    select distinct on (source_record_id) *
    from staging.stg_partner__clients
    where source_record_id is not null
    order by source_record_id, batch_id desc, obtained_at desc nulls last, line_number desc
)
select c.source, c.source_record_id, c.last_name_norm, c.first_name_norm, c.middle_name_norm,
       null::text, c.birth_date::text, c.phone_e164, c.email, c.passport_digits, c.address,
       o.contract_numbers, {_UTC.format(c="c.updated_at")},
       c.last_name, c.first_name, c.middle_name
from crm c left join owned o on o.crm_client_id = c.source_record_id
union all
select w.source, w.source_record_id, w.last_name_norm, w.first_name_norm, w.middle_name_norm,
       null, w.birth_date::text, w.phone_e164, w.email, null, null,
       null, {_UTC.format(c="w.occurred_at")},
       w.last_name, w.first_name, w.middle_name
from web w
union all
select h.source, h.source_record_id, null, null, null,
       h.fio_norm, h.birth_date::text, h.phone_e164, h.email, h.passport_digits, null,
       h.contract_number, {_UTC.format(c="h.received_at")},
       null, null, null
from helpdesk h
union all
select p.source, p.source_record_id, p.last_name_norm, p.first_name_norm, p.middle_name_norm,
       null, p.birth_date::text, p.phone_e164, p.email, null, null,
       null, {_UTC.format(c="p.obtained_at")},
       p.last_name, p.first_name, p.middle_name
from partner p
"""

GOLDEN_COLUMNS = [
    "client_id",
    "last_name",
    "first_name",
    "middle_name",
    "birth_date",
    "phone",
    "email",
    "source_record_count",
    "updated_at",
]


def ensure_tables(conn: psycopg.Connection) -> None:
    """The identity tables are part of the schema ingestion creates (sources/schema.py)."""
    ensure_schema(conn)


def _copy_out(conn: psycopg.Connection, query: str) -> bytes:
    buf = io.BytesIO()
    with conn.cursor() as cur, cur.copy(f"copy ({query}) to stdout (format csv)") as copy:
        for block in copy:
            buf.write(block)
    return buf.getvalue()


def _read_csv(data: bytes, columns: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    """CSV from COPY: an unquoted empty field is NULL, a quoted one an empty string."""
    if not data:
        return pa.table({c: pa.array([], types.get(c, pa.string())) for c in columns})
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=columns, block_size=64 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={c: types.get(c, pa.string()) for c in columns},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def read_records(conn: psycopg.Connection) -> pd.DataFrame:
    """The engine's input frame (assets/identity/__init__.py) from the staged tables, plus the
    original-case names (`*_orig`) for golden_client."""
    table = _read_csv(_copy_out(conn, RECORDS_SQL), RECORD_COLUMNS, {})
    df = table.to_pandas(types_mapper=None)
    df = df.astype({c: "object" for c in df.columns})
    df = df.where(df.notna(), None)
    contracts = df["contract_numbers"].astype("string").str.split(_LIST_SEP, regex=False)
    df["contract_numbers"] = contracts.where(contracts.notna(), pd.Series([[]] * len(df))).astype(
        "object"
    )
    df["updated_at"] = pd.to_datetime(df["updated_at"], utc=True, format="ISO8601")
    return df


def read_xref(conn: psycopg.Connection, schema: str = "consent") -> pd.DataFrame:
    """The published xref, or a generation's (empty frame when there is none yet)."""
    ensure_tables(conn)
    table = _read_csv(
        _copy_out(
            conn,
            f"select {', '.join(XREF_COLUMNS)} from "
            + sql.Identifier(schema, "client_xref").as_string(conn),
        ),
        XREF_COLUMNS,
        {"match_probability": pa.float64()},
    )
    return table.to_pandas()


def read_ambiguous(conn: psycopg.Connection) -> pd.DataFrame:
    """The previous run's ambiguous pairs: an incremental run keeps those it does not re-score."""
    ensure_tables(conn)
    # COPY writes booleans as t/f, which pyarrow does not read: as 1/0 instead
    columns = [c if c != "same_client" else "same_client::int" for c in AMBIGUOUS_COLUMNS]
    table = _read_csv(
        _copy_out(conn, f"select {', '.join(columns)} from consent.identity_ambiguous_matches"),
        AMBIGUOUS_COLUMNS,
        {"match_probability": pa.float64(), "same_client": pa.int8()},
    )
    df = table.to_pandas()
    df["same_client"] = df["same_client"].astype(bool)
    return df


PINNED_COLUMNS = ["source", "source_record_id", "client_id"]


def read_pinned(conn: psycopg.Connection) -> pd.DataFrame:
    """Records depersonalised on an erase request (assets/depersonalisation.py), with the client
    they had then: identity resolution keeps them there instead of matching them again."""
    ensure_tables(conn)
    table = _read_csv(
        _copy_out(conn, f"select {', '.join(PINNED_COLUMNS)} from consent.depersonalised_records"),
        PINNED_COLUMNS,
        {},
    )
    return table.to_pandas()


def _csv_bytes(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _copy_in(conn: psycopg.Connection, table: str, df: pd.DataFrame) -> None:
    data = _csv_bytes(df)
    with (
        conn.cursor() as cur,
        cur.copy(f"copy {table} ({', '.join(df.columns)}) from stdin (format csv)") as copy,
    ):
        view = memoryview(data)
        for start in range(0, len(view), 8 << 20):
            copy.write(view[start : start + (8 << 20)])


def _typed(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    out = df.reindex(columns=list(columns)).copy()
    for c in out.columns:
        if c == "match_probability":
            out[c] = out[c].astype("float64")
        elif c == "same_client":
            out[c] = out[c].astype("boolean")
        elif c == "source_record_count":
            out[c] = out[c].astype("Int64")
        elif c == "birth_date":
            out[c] = pd.to_datetime(out[c], errors="coerce").dt.date
            out[c] = out[c].astype("object").where(out[c].notna(), None)
        elif c == "updated_at":
            out[c] = pd.to_datetime(out[c], utc=True, errors="coerce").astype("datetime64[us, UTC]")
        else:
            out[c] = out[c].astype("string")
    return out


SCORES_DDL = """
create schema if not exists identity;
revoke all on schema identity from public;
create table if not exists identity.score_calibration (calibration text not null);
create table if not exists identity.scored_records (
    unique_id   text primary key,
    record_hash text not null
);
create table if not exists identity.pair_scores (
    unique_id_l       text not null,
    unique_id_r       text not null,
    match_probability double precision not null,
    primary key (unique_id_l, unique_id_r)
);
"""


def read_scores(conn: psycopg.Connection) -> PairScores | None:
    """The saved pair scores, or None when there are none (a first run, or a full refresh
    cleared them)."""
    conn.execute(SCORES_DDL)
    row = conn.execute("select calibration from identity.score_calibration").fetchone()
    if row is None:
        return None
    records = _read_csv(
        _copy_out(conn, "select unique_id, record_hash from identity.scored_records"),
        ["unique_id", "record_hash"],
        {},
    ).to_pandas()
    pairs = _read_csv(
        _copy_out(
            conn,
            "select unique_id_l, unique_id_r, match_probability from identity.pair_scores",
        ),
        ["unique_id_l", "unique_id_r", "match_probability"],
        {"match_probability": pa.float64()},
    ).to_pandas()
    return PairScores(row[0], records, pairs)


def _write_scores(conn: psycopg.Connection, scores: PairScores) -> None:
    conn.execute(SCORES_DDL)
    conn.execute(
        "truncate identity.score_calibration, identity.scored_records, identity.pair_scores"
    )
    conn.execute("insert into identity.score_calibration values (%s)", (scores.calibration,))
    if len(scores.records):
        _copy_in(conn, "identity.scored_records", scores.records.astype("string"))
    if len(scores.pairs):
        _copy_in(conn, "identity.pair_scores", _typed(scores.pairs, scores.pairs.columns))


# `consent` or a generation's schema (pipelines/publication.py): written into SQL as it is
SCHEMA_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def write_results(
    conn: psycopg.Connection,
    xref: pd.DataFrame,
    golden: pd.DataFrame,
    ambiguous: pd.DataFrame,
    schema: str = "consent",
    scores: PairScores | None = None,
) -> dict[str, int]:
    """Replace the three identity tables of `schema` in one transaction (truncate + COPY).

    A pipeline run writes into its generation's schema (pipelines/publication.py), which readers
    see only once the whole run is published; `consent` itself is for a database that has no
    publication yet (tests that resolve and derive by hand).
    """
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"not a schema name: {schema!r}")
    frames = {
        f"{schema}.client_xref": _typed(xref, XREF_COLUMNS),
        f"{schema}.golden_client": _typed(golden, GOLDEN_COLUMNS),
        f"{schema}.identity_ambiguous_matches": _typed(ambiguous, AMBIGUOUS_COLUMNS),
    }
    with conn.transaction():
        ensure_tables(conn)
        create_identity_tables(conn, schema)
        conn.execute(f"truncate {', '.join(frames)}")
        for table, df in frames.items():
            if len(df):
                _copy_in(conn, table, df)
        if scores is not None:
            _write_scores(conn, scores)
    return {
        name: len(df)
        for name, df in zip(
            ("client_xref", "golden_client", "identity_ambiguous_matches"),
            frames.values(),
            strict=True,
        )
    }
