"""The Russian production calendar as a table, for deadlines counted in working days.

152-ФЗ gives an operator 10 working days to honour a revocation. Working days follow the
production calendar: public holidays, days off moved onto weekdays, and Saturdays that become
working days — all of which the maintained `holidays` package knows. The table numbers working
days consecutively, so "the 10th working day after D" is one indexed lookup in SQL.
"""

from datetime import date, timedelta

import holidays
import psycopg
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset

from pipelines.resources import ConsentCenterResource
from sources.schema import ensure_schema

FIRST_YEAR = 2000
YEARS_AHEAD = 15
CALENDAR_KEY = AssetKey(["consent", "production_calendar"])


def calendar_rows(first_year: int, last_year: int) -> list[tuple[date, bool, int, str | None]]:
    """(day, working?, running count of working days, holiday name) for whole years."""
    ru = holidays.RU(years=range(first_year, last_year + 1))
    rows = []
    seq = 0
    day = date(first_year, 1, 1)
    end = date(last_year, 12, 31)
    while day <= end:
        working = ru.is_working_day(day)
        seq += working
        rows.append((day, working, seq, ru.get(day)))
        day += timedelta(days=1)
    return rows


def write_calendar(conn: psycopg.Connection, last_year: int) -> int:
    rows = calendar_rows(FIRST_YEAR, last_year)
    with conn.transaction():
        ensure_schema(conn)
        conn.execute("truncate consent.production_calendar")
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy consent.production_calendar (day, is_working_day, working_day_seq, "
                "holiday_name) from stdin"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
    return len(rows)


@multi_asset(
    name="production_calendar",
    specs=[
        AssetSpec(
            CALENDAR_KEY,
            description="Russian production calendar with working days numbered (holidays).",
            group_name="reference",
            kinds={"python", "postgres"},
        )
    ],
)
def production_calendar(context: AssetExecutionContext, consent_center: ConsentCenterResource):
    last_year = date.today().year + YEARS_AHEAD
    with consent_center.connect(autocommit=True) as conn:
        days = write_calendar(conn, last_year)
    context.log.info(f"production calendar {FIRST_YEAR}-{last_year}: {days} days")
    return MaterializeResult(metadata={"days": days, "last_year": last_year})
