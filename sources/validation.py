"""Row checks at the door, as one set-based SQL pass over a batch's freshly loaded partition.

Each column's declaration (required, date, timestamp, enum, ...) becomes a CASE branch; the
first failing branch names the field and rule. Failing rows move to consent.dq_rejections in the
same statement that deletes them from the raw partition, so a row is always in exactly one place.
Reasons describe the problem, never the value (it may be personal data).
"""

from __future__ import annotations

from psycopg import sql

from sources.spec import Column, FileSpec, Kind, Rule


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
