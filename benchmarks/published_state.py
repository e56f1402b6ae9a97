"""Copies of the published state and their comparison, row for row (EXCEPT ALL both ways).

One owner for "what the published state is, and when two are the same", shared by the daily
benchmark and the tests that compare a daily run with a rederive or a full refresh.
"""

from __future__ import annotations

import psycopg

#: every published table readers rely on (identity, events, history, golden, reports)
PUBLISHED = (
    "client_xref",
    "golden_client",
    "identity_ambiguous_matches",
    "consent_event",
    "consent_history",
    "golden_consent_at_run",
    "golden_consent",
    "report_expiring",
    "report_conflicts",
    "report_revocation_deadlines",
    "report_depersonalisation",
)
#: facts of a run, not of the input (when a batch was loaded, an erasure carried out)
WALL_CLOCK = ("loaded_at", "executed_at", "reapplied_at")


def snapshot(
    conn: psycopg.Connection, schema: str, tables: tuple[str, ...] = PUBLISHED
) -> dict[str, int]:
    """Copies of `tables` of schema consent in `schema` (replaced), wall-clock columns left
    out; their row counts."""
    conn.execute(f"drop schema if exists {schema} cascade")
    conn.execute(f"create schema {schema}")
    counts = {}
    for table in tables:
        columns = [
            name
            for (name,) in conn.execute(
                "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
                "and not attisdropped order by attnum",
                (f"consent.{table}",),
            )
            if name not in WALL_CLOCK
        ]
        conn.execute(
            f"create table {schema}.{table} as select {', '.join(columns)} from consent.{table}"
        )
        (counts[table],) = conn.execute(f"select count(*) from {schema}.{table}").fetchone()
    return counts


def except_all(conn: psycopg.Connection, one: str, other: str, table: str) -> tuple[int, int]:
    """(rows of `one`.table not in `other`.table, and the reverse), duplicates counted."""
    a = f"select * from {one}.{table} except all select * from {other}.{table}"
    b = f"select * from {other}.{table} except all select * from {one}.{table}"
    return tuple(conn.execute(f"select count(*) from ({q}) d").fetchone()[0] for q in (a, b))


def differences(
    conn: psycopg.Connection, one: str, other: str, tables: tuple[str, ...] = PUBLISHED
) -> dict[str, tuple[int, int]]:
    """Per table of `tables` that differs between the snapshots `one` and `other`: except_all."""
    found = {}
    for table in tables:
        counts = except_all(conn, one, other, table)
        if any(counts):
            found[table] = counts
    return found
