"""Row checks at the door, as one set-based SQL pass over a batch's freshly loaded partition.

Each column's declaration (required, date, timestamp, enum, ...) becomes a CASE branch; the
first failing branch names the field and rule. Failing rows move to consent.dq_rejections in the
same statement that deletes them from the raw partition, so a row is always in exactly one place.
Reasons describe the problem, never the value (it may be personal data).
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from sources.spec import Column, FileSpec, Kind, Rule

# tolerance before a receipt time counts as "in the future" against the batch's arrival: clocks
# and time zones of the sending systems differ; a typo such as 2052 is far beyond it
FUTURE_TOLERANCE = "1 day"


def _iso_date_prefix(value: sql.Composable) -> sql.Composable:
    """YYYY-MM-DD at the start, tested with plain string functions (cheaper than a regex)."""
    return sql.SQL(
        "(substr({v}, 5, 1) = '-' and substr({v}, 8, 1) = '-' "
        "and translate(left({v}, 10), '0123456789', '') = '--')"
    ).format(v=value)


def _failure_branches(column: Column) -> list[tuple[sql.Composable, Rule, str]]:
    """(condition, rule, reason) for one column, in the order they are tried."""
    ident = sql.Identifier(column.name)
    value = sql.SQL("coalesce(btrim({}), '')").format(ident)
    present = sql.SQL("{} <> ''").format(value)
    branches: list[tuple[sql.Composable, Rule, str]] = []
    if column.required:
        branches.append(
            (sql.SQL("{} = ''").format(value), Rule.MISSING_REQUIRED, f"{column.name} is empty")
        )
    if column.kind is Kind.DATE:
        branches.append(
            (
                sql.SQL(
                    "{p} and not (length({v}) = 10 and {shape} and pg_input_is_valid({v}, 'date'))"
                ).format(p=present, v=value, shape=_iso_date_prefix(value)),
                Rule.INVALID_DATE,
                f"{column.name} is not an ISO 8601 date (YYYY-MM-DD)",
            )
        )
    elif column.kind is Kind.TIMESTAMP:
        branches.append(
            (
                sql.SQL(
                    "{p} and not ({shape} and {tail} and pg_input_is_valid({v}, 'timestamptz'))"
                ).format(
                    p=present,
                    v=value,
                    shape=_iso_date_prefix(value),
                    # after the date only time, fraction and offset characters ('T10:00:00+03:00'),
                    # never words PostgreSQL would also take ('2024-01-01 BC', '... MSK')
                    tail=sql.SQL("translate(substr({v}, 11), '0123456789:.TZ +-', '') = ''").format(
                        v=value
                    ),
                ),
                Rule.INVALID_DATE,
                f"{column.name} is not an ISO 8601 timestamp",
            )
        )
    elif column.kind is Kind.BOOLEAN:
        branches.append(
            (
                sql.SQL("{} and lower({}) not in ('true', 'false')").format(present, value),
                Rule.UNKNOWN_VALUE,
                f"{column.name} is not true or false",
            )
        )
    elif column.kind is Kind.INTEGER:
        branches.append(
            (
                sql.SQL("{} and {} !~ '^[0-9]+$'").format(present, value),
                Rule.UNKNOWN_VALUE,
                f"{column.name} is not a whole number",
            )
        )
    elif column.kind is Kind.ENUM:
        allowed = sql.SQL(", ").join(sql.Literal(v) for v in column.allowed)
        branches.append(
            (
                sql.SQL("{} and {} not in ({})").format(present, value, allowed),
                Rule.UNKNOWN_VALUE,
                f"{column.name} is not one of: {', '.join(column.allowed)}",
            )
        )
    return branches


def failure_expression(spec: FileSpec) -> sql.Composed:
    """A CASE yielding 'field|rule|reason' for the first failed check of a row, else NULL."""
    all_empty = sql.SQL("concat({}) = ''").format(
        sql.SQL(", ").join(
            sql.SQL("btrim({})").format(sql.Identifier(c)) for c in spec.column_names
        )
    )
    parts = [
        sql.SQL("case when {} then {}").format(
            all_empty, sql.Literal(f"|{Rule.MISSING_REQUIRED.value}|blank line: no values at all")
        )
    ]
    for column in spec.columns:
        for condition, rule, reason in _failure_branches(column):
            parts.append(
                sql.SQL(" when {} then {}").format(
                    condition, sql.Literal(f"{column.name}|{rule.value}|{reason}")
                )
            )
    parts.append(sql.SQL(" end"))
    return sql.Composed(parts)


def check_rows(
    conn: psycopg.Connection,
    partition: sql.Identifier,
    spec: FileSpec,
    source: str,
    batch_id: str,
    arrived_at: datetime,
) -> None:
    """Every row check of a freshly loaded partition, in order: codes, stop rows, rejections."""
    for statement in normalise_codes(partition, spec, source, batch_id):
        conn.execute(statement)
    for statement in keep_stop_rows(partition, spec, source, batch_id, arrived_at):
        conn.execute(statement)
    conn.execute(reject_failing_rows(partition, spec, source, batch_id))


def code_form(value: sql.Composable) -> sql.Composable:
    """How a code is read: case, surrounding spaces and inner spaces or hyphens do not matter."""
    return sql.SQL("lower(regexp_replace(btrim({}), '[[:space:]-]+', '_', 'g'))").format(value)


def _warning_insert(
    partition: sql.Identifier,
    spec: FileSpec,
    source: str,
    batch_id: str,
    checks: list[tuple[str, sql.Composable, Rule, str]],
    where: sql.Composable,
) -> sql.Composed:
    """One `warn` row per (row, failed check); checks are (field, condition, rule, reason)."""
    values = sql.SQL(", ").join(
        sql.SQL("({}, {}, {}, {})").format(
            sql.Literal(field), condition, sql.Literal(rule.value), sql.Literal(reason)
        )
        for field, condition, rule, reason in checks
    )
    return sql.SQL(
        """
        insert into consent.dq_rejections
            (source, batch_id, file_name, line_number, record_id, field, rule, severity,
             reason, stage, raw_record)
        select {source}, {batch_id}, {file_name}, t._line_number,
               nullif(({record_id})::text, ''), c.field, c.rule, 'warn', c.reason, 'ingest',
               to_jsonb(t) - '_batch_id' - '_file_name' - '_line_number' - '_payload'
        from {partition} as t
        cross join lateral (values {values}) as c(field, failed, rule, reason)
        where ({where}) and c.failed
        """
    ).format(
        source=sql.Literal(source),
        batch_id=sql.Literal(batch_id),
        file_name=sql.Literal(spec.file_name),
        record_id=sql.SQL(spec.record_id),
        partition=partition,
        values=values,
        where=where,
    )


def normalise_codes(
    partition: sql.Identifier, spec: FileSpec, source: str, batch_id: str
) -> list[sql.Composed]:
    """Codes written in another case or spacing ('Revoke_consent ') are read as the code.

    The row keeps its place and a warning names the field; the raw value is rewritten to the
    code so that every reader downstream sees one spelling (the warning keeps the original).
    """
    checks, updates = [], []
    for column in spec.columns:
        if column.kind is not Kind.ENUM:
            continue
        ident = sql.Identifier(column.name)
        allowed = sql.SQL(", ").join(sql.Literal(v) for v in column.allowed)
        variant = sql.SQL("({v} not in ({a}) and {f} in ({a}))").format(
            v=ident, a=allowed, f=code_form(ident)
        )
        checks.append(
            (
                column.name,
                variant,
                Rule.UNKNOWN_VALUE,
                f"{column.name} is written in another case or spacing; read as the code",
            )
        )
        updates.append((ident, variant))
    if not checks:
        return []
    any_variant = sql.SQL(" or ").join(condition for _, condition in updates)
    update = sql.SQL("update {partition} set {sets} where {any}").format(
        partition=partition,
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = case when {cond} then {f} else {c} end").format(
                c=ident, cond=condition, f=code_form(ident)
            )
            for ident, condition in updates
        ),
        any=any_variant,
    )
    return [_warning_insert(partition, spec, source, batch_id, checks, any_variant), update]


def _as_instant(value: sql.Composable) -> sql.Composable:
    """A valid timestamp text as timestamptz; naive values are Moscow time (DESIGN section 5)."""
    return sql.SQL(
        "(case when {v} ~ '(Z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$' then {v}::timestamptz "
        "else {v}::timestamp at time zone 'Europe/Moscow' end)"
    ).format(v=value)


def keep_stop_rows(
    partition: sql.Identifier,
    spec: FileSpec,
    source: str,
    batch_id: str,
    arrived_at: datetime,
) -> list[sql.Composed]:
    """Keep revocations, restrictions and erase requests whatever their unneeded fields hold.

    For a stop row, each failed check on a column it does not need empties that column, and a
    receipt time that is missing, unreadable or after the batch's arrival becomes the arrival
    time; each case is a `warn` row. Checks on the columns it needs still reject it afterwards.
    """
    stop = spec.stop_rows
    if stop is None:
        return []
    arrival = sql.Literal(arrived_at.isoformat(timespec="seconds"))
    checks: list[tuple[str, sql.Composable, Rule, str]] = []
    sets: list[sql.Composable] = []
    for column in spec.columns:
        if column.name in stop.needs:
            continue
        ident = sql.Identifier(column.name)
        branches = _failure_branches(column)
        if column.name == stop.receipt:
            unreadable = sql.SQL("({})").format(
                sql.SQL(" or ").join(condition for condition, _, _ in branches)
            )
            # a CASE, not AND: the cast must never see an unreadable value
            future = sql.SQL(
                "(case when {bad} then false "
                "else {instant} > {arrival}::timestamptz + interval {tolerance} end)"
            ).format(
                bad=unreadable,
                instant=_as_instant(sql.SQL("btrim({})").format(ident)),
                arrival=arrival,
                tolerance=sql.Literal(FUTURE_TOLERANCE),
            )
            checks.append(
                (
                    column.name,
                    unreadable,
                    Rule.INVALID_DATE,
                    f"{column.name} cannot be read; the batch's arrival time is used",
                )
            )
            checks.append(
                (
                    column.name,
                    future,
                    Rule.INVALID_DATE,
                    f"{column.name} lies after the batch arrived; the arrival time is used",
                )
            )
            sets.append(
                sql.SQL("{c} = case when {bad} or {future} then {arrival} else {c} end").format(
                    c=ident, bad=unreadable, future=future, arrival=arrival
                )
            )
            continue
        for condition, rule, reason in branches:
            checks.append(
                (column.name, condition, rule, f"{reason}; emptied, the row carries a revocation")
            )
        if branches:
            failed = sql.SQL(" or ").join(condition for condition, _, _ in branches)
            sets.append(
                sql.SQL("{c} = case when {failed} then '' else {c} end").format(
                    c=ident, failed=failed
                )
            )
    if not checks:
        return []
    any_failed = sql.SQL(" or ").join(condition for _, condition, _, _ in checks)
    where = sql.SQL("({stop}) and ({failed})").format(stop=sql.SQL(stop.when), failed=any_failed)
    update = sql.SQL("update {partition} as t set {sets} where {where}").format(
        partition=partition, sets=sql.SQL(", ").join(sets), where=where
    )
    return [_warning_insert(partition, spec, source, batch_id, checks, where), update]


def reject_failing_rows(
    partition: sql.Identifier, spec: FileSpec, source: str, batch_id: str
) -> sql.Composed:
    """One statement: record every failing row of the partition, then delete it from raw."""
    return sql.SQL(
        """
        with rejected as (
            insert into consent.dq_rejections
                (source, batch_id, file_name, line_number, record_id, field, rule, severity,
                 reason, stage, raw_record)
            select {source}, {batch_id}, {file_name}, t._line_number,
                   nullif(({record_id})::text, ''),
                   split_part(f.failure, '|', 1), split_part(f.failure, '|', 2), 'reject',
                   split_part(f.failure, '|', 3), 'ingest',
                   -- built for failing rows only: serialising every row costs more than COPY
                   to_jsonb(t) - '_batch_id' - '_file_name' - '_line_number' - '_payload'
            from {partition} as t cross join lateral (select {failure} as failure) as f
            where f.failure is not null
            returning line_number
        )
        delete from {partition} as t using rejected
        where t._line_number = rejected.line_number
        """
    ).format(
        record_id=sql.SQL(spec.record_id),
        failure=failure_expression(spec),
        partition=partition,
        source=sql.Literal(source),
        batch_id=sql.Literal(batch_id),
        file_name=sql.Literal(spec.file_name),
    )
