"""The change feed over HTTP and the downstream systems' acknowledgements (DESIGN section 10).

`consent.report_propagation` proves, per revocation in the feed and per system that has ever
acknowledged, when the system applied it against the legal deadline: 10 working days after the
revocation was received, on the Russian production calendar (consent.production_calendar, as
report_revocation_deadlines counts them).
"""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import dict_row

from pipelines.answers import AnswerError
from pipelines.publication import relation_exists
from pipelines.settings import consent_now

MAX_LIMIT = 10_000
SYSTEM_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

CHANGE_COLUMNS = (
    "change_id, client_id, purpose, channel, partner_code, old_status, new_status, allowed, "
    "valid_from, valid_until, basis_event_ids, changed_at"
)

#: the reader's instant, as golden_consent's (macros/as_of.sql: reader_instant)
READER_NOW = "coalesce(nullif(current_setting('consent.now', true), '')::timestamptz, now())"

PROPAGATION_VIEW = f"""
create or replace view consent.report_propagation as
with revocations as (
    select c.change_id, c.client_id, coalesce(c.valid_from, c.changed_at) as received_at
    from consent.consent_change c
    where c.new_status = 'revoked'
),
dated as (
    select r.*, received_day.working_day_seq as received_seq
    from revocations r
    left join consent.production_calendar received_day
        on received_day.day = (r.received_at at time zone 'Europe/Moscow')::date
),
deadlines as (
    select d.change_id, d.client_id, d.received_at,
           ((deadline_day.day + 1)::timestamp at time zone 'Europe/Moscow') as deadline
    from dated d
    left join consent.production_calendar deadline_day
        on deadline_day.working_day_seq = d.received_seq + 10 and deadline_day.is_working_day
),
systems as (
    select system, up_to_change_id, min(acknowledged_at) as acknowledged_at
    from consent.api_acknowledgement
    group by system, up_to_change_id
)
select d.change_id, d.client_id, s.system, d.received_at, a.acknowledged_at, d.deadline,
       case when a.acknowledged_at is not null and a.acknowledged_at <= d.deadline then 'on_time'
            when a.acknowledged_at is not null then 'late'
            when {READER_NOW} > d.deadline then 'late'
            else 'pending' end as state
from deadlines d
cross join (select distinct system from consent.api_acknowledgement) s
left join lateral (
    select min(k.acknowledged_at) as acknowledged_at
    from systems k
    where k.system = s.system and k.up_to_change_id >= d.change_id
) a on true;
comment on view consent.report_propagation is
    'Per revocation in the change feed and per downstream system: when it acknowledged, its '
    'deadline (10 working days after receipt) and state (on_time, late, pending).';
"""


def ensure_propagation_report(conn: psycopg.Connection) -> None:
    """The report's view, once the change feed and the calendar exist."""
    if relation_exists(conn, "consent", "consent_change") and relation_exists(
        conn, "consent", "production_calendar"
    ):
        conn.execute(PROPAGATION_VIEW)


def read_changes(conn: psycopg.Connection, after: int, limit: int) -> tuple[list[dict], int]:
    """The changes after `after`, oldest first, at most `limit`; and the last change id in the
    feed when none came (so that a caller polling an idle feed keeps its place)."""
    if not relation_exists(conn, "consent", "consent_change"):
        return [], after
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {CHANGE_COLUMNS} from consent.consent_change where change_id > %s "
            "order by change_id limit %s",
            (after, limit),
        ).fetchall()
    return rows, (rows[-1]["change_id"] if rows else after)


class BeyondTheFeed(AnswerError):
    """An acknowledgement of changes the feed does not hold (yet)."""


def acknowledge(conn: psycopg.Connection, key_name: str, system: str, up_to: int) -> dict:
    """Record that `system` applied every change up to `up_to` (which must exist)."""
    if not SYSTEM_PATTERN.fullmatch(system or ""):
        raise AnswerError(
            "system must be 1 to 63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    last = 0
    if relation_exists(conn, "consent", "consent_change"):
        last = conn.execute(
            "select coalesce(max(change_id), 0) from consent.consent_change"
        ).fetchone()[0]
    if up_to < 0 or up_to > last:
        raise BeyondTheFeed(f"up_to_change_id must be between 0 and the feed's last change, {last}")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "insert into consent.api_acknowledgement "
            "(system, up_to_change_id, key_name, acknowledged_at) "
            "values (%s, %s, %s, %s) returning system, up_to_change_id, acknowledged_at",
            # the product's clock (CONSENT_NOW when an installation pins it)
            (system, up_to, key_name, consent_now()),
        ).fetchone()
