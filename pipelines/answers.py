"""Answers for people: may we contact this person (or these people) now or at an instant, and why.

Both questions are answered from the golden tables with set-based SQL: one record is a lookup
on consent_history's key index; a segment of any size is one COPY in and one join.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pipelines.publication import one_publication, relation_exists
from pipelines.settings import MOSCOW, consent_now

PURPOSES = ("processing", "storage", "third_party_transfer", "marketing", "analytics")
CHANNELS = ("call", "sms", "email", "messenger", "push", "post")
SOURCES = ("crm", "web", "helpdesk", "partner")


class AnswerError(ValueError):
    """A question that cannot be answered as asked (unknown record, bad code or instant)."""


def parse_instant(text: str | None) -> datetime:
    """ISO 8601; an instant without a zone is Moscow time (DESIGN section 5).

    None: the product's now, CONSENT_NOW when it is set, else the real now. The stored function
    consent.consent_status_at answers at the instant it is given: consent_history holds every
    interval, so the answer at any instant does not depend on the instant of the last build.
    """
    if not text:
        return consent_now()
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise AnswerError(f"--at {text!r} is not an ISO 8601 date or timestamp") from error
    return value if value.tzinfo else value.replace(tzinfo=MOSCOW)


def check_codes(purpose: str, channel: str) -> None:
    if purpose not in PURPOSES:
        raise AnswerError(f"--purpose must be one of: {', '.join(PURPOSES)}")
    if channel not in CHANNELS:
        raise AnswerError(f"--channel must be one of: {', '.join(CHANNELS)}")


@dataclass
class Basis:
    event_id: str
    source: str
    source_record_id: str
    action: str
    effective_at: str
    valid_until: str | None
    evidence_url: str | None
    evidence_level: str | None
    process: str
    detail: str | None


@dataclass
class Answer:
    allowed: bool
    status: str
    client_id: str
    purpose: str
    channel: str
    partner_code: str
    at: str
    valid_from: str | None
    valid_to: str | None
    basis: list[Basis] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(MOSCOW).isoformat() if value else None


def client_of(conn: psycopg.Connection, source: str, record_id: str) -> str:
    row = conn.execute(
        "select client_id from consent.client_xref where source = %s and source_record_id = %s",
        (source, record_id),
    ).fetchone()
    if row is None:
        raise AnswerError(f"no {source} record {record_id!r} is known (see consent.client_xref)")
    return row[0]


def can_contact(
    conn: psycopg.Connection,
    source: str,
    record_id: str,
    purpose: str,
    channel: str,
    at: datetime,
    partner_code: str = "",
) -> Answer:
    check_codes(purpose, channel)
    with one_publication(conn):
        return _can_contact(conn, source, record_id, purpose, channel, at, partner_code)


def _can_contact(conn, source, record_id, purpose, channel, at, partner_code) -> Answer:
    client_id = client_of(conn, source, record_id)
    status, valid_from, valid_to, basis_id = conn.execute(
        "select * from consent.consent_status_at(%s, %s, %s, %s, %s)",
        (client_id, purpose, channel, partner_code, at),
    ).fetchone()
    answer = Answer(
        allowed=status == "granted",
        status=status,
        client_id=client_id,
        purpose=purpose,
        channel=channel,
        partner_code=partner_code,
        at=_iso(at),
        valid_from=_iso(valid_from),
        valid_to=_iso(valid_to),
    )
    answer.basis = _basis(conn, client_id, purpose, channel, partner_code, at, status, basis_id)
    return answer


def _key_events(conn: psycopg.Connection) -> sql.Composable:
    """The events by concrete key: the published ones (consent.consent_key_event), or, on a
    database whose models were built by hand (`dbt build`, no publication), dbt's own."""
    if relation_exists(conn, "consent", "consent_key_event"):
        return sql.Identifier("consent", "consent_key_event")
    return sql.Identifier("staging", "int_consent_key_events")


def _basis(conn, client_id, purpose, channel, partner_code, at, status, basis_id) -> list[Basis]:
    """The deciding events: every grant holding a granted consent open, else the one event."""
    if status == "none":
        return []
    if status == "granted":
        ids = [
            row[0]
            for row in conn.execute(
                sql.SQL(
                    """
                with last_revocation as (
                    select max(effective_at) as at from {key_events}
                    where client_id = %(c)s and purpose = %(p)s and channel = %(ch)s
                      and partner_code = %(pc)s and action in ('revoke', 'restrict')
                      and effective_at <= %(at)s
                )
                -- a channel-uniform group's grants are stored once, under channel `any`
                select event_id from {key_events}, last_revocation r
                where client_id = %(c)s and purpose = %(p)s and channel in (%(ch)s, 'any')
                  and partner_code = %(pc)s and action = 'grant'
                  and effective_at <= %(at)s and ends_at > %(at)s
                  and (r.at is null or effective_at > r.at)
                order by effective_at, event_id
                """
                ).format(key_events=_key_events(conn)),
                {"c": client_id, "p": purpose, "ch": channel, "pc": partner_code, "at": at},
            )
        ]
    else:
        ids = [basis_id]
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select event_id, source, source_record_id, action, effective_at, valid_until, "
            "evidence_url, evidence_level, process, detail from consent.consent_event "
            "where event_id = any(%s) order by effective_at, event_id",
            (ids,),
        ).fetchall()
    return [
        Basis(
            **{
                **row,
                "effective_at": _iso(row["effective_at"]),
                "valid_until": _iso(row["valid_until"]),
            }
        )
        for row in rows
    ]


SEGMENT_CATEGORIES = {
    "granted": "allowed",
    "none": "no_consent",
    "expired": "expired",
    "revoked": "revoked",
    "restricted": "restricted",
    "unknown_record": "unknown_record",
}


@dataclass
class SegmentResult:
    counts: dict[str, int]
    at: str

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_segment_header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            header_line = handle.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise AnswerError(f"cannot read {path}: {error}") from error
    header = [c.strip() for c in next(csv.reader([header_line]), [])]
    if header not in (["source", "source_record_id"], ["client_id"]):
        raise AnswerError(f"{path} line 1: header must be 'source,source_record_id' or 'client_id'")
    return header


def segment(
    conn: psycopg.Connection,
    path: Path,
    purpose: str,
    channel: str,
    at: datetime,
    partner_code: str = "",
) -> SegmentResult:
    """Status of every listed person, into temp table `segment_result` (file order kept)."""
    check_codes(purpose, channel)
    with one_publication(conn):
        return _segment(conn, path, purpose, channel, at, partner_code)


def _segment(conn, path, purpose, channel, at, partner_code) -> SegmentResult:
    by_client = read_segment_header(path) == ["client_id"]
    conn.execute(
        "create temp table if not exists segment_input "
        "(line_number bigint generated always as identity, source text, source_record_id text, "
        "client_id text)"
    )
    conn.execute("truncate segment_input")
    conn.execute("alter table segment_input alter column line_number restart with 2")
    columns = "client_id" if by_client else "source, source_record_id"
    try:
        with (
            conn.cursor() as cur,
            cur.copy(
                f"copy segment_input ({columns}) from stdin (format csv, header true)"
            ) as copy,
            open(path, "rb") as handle,
        ):
            while block := handle.read(8 << 20):
                copy.write(block)
    except psycopg.errors.DataError as error:
        raise AnswerError(f"{path}: {error.diag.message_primary} ({error.diag.context})") from error
    if by_client:
        people = (
            "select i.line_number, i.source, i.source_record_id, i.client_id, "
            "exists (select 1 from consent.client_xref k where k.client_id = i.client_id) as known "
            "from segment_input i"
        )
    else:
        people = (
            "select i.line_number, i.source, i.source_record_id, x.client_id, "
            "x.client_id is not null as known from segment_input i "
            "left join consent.client_xref x "
            "on x.source = i.source and x.source_record_id = i.source_record_id"
        )
    conn.execute("drop table if exists segment_result")
    conn.execute(
        f"""
        create temp table segment_result as
        select p.line_number, p.source, p.source_record_id, p.client_id,
               h.status = 'granted' as allowed,
               case when not p.known then 'unknown_record'
                    when h.status is null then 'no_consent'
                    when h.status = 'granted' then 'allowed'
                    else h.status end as result,
               h.basis_event_id
        from ({people}) p
        left join consent.consent_history h
            on h.client_id = p.client_id and h.purpose = %(p)s and h.channel = %(ch)s
            and h.partner_code = %(pc)s
            and h.valid_from <= %(at)s and (h.valid_to is null or h.valid_to > %(at)s)
        """,
        {"p": purpose, "ch": channel, "pc": partner_code, "at": at},
    )
    counts = dict.fromkeys(SEGMENT_CATEGORIES.values(), 0)
    counts.update(dict(conn.execute("select result, count(*) from segment_result group by result")))
    return SegmentResult(counts=counts, at=_iso(at))


def write_segment_list(conn: psycopg.Connection, out) -> None:
    """The per-record list as CSV, streamed from PostgreSQL (binary file object)."""
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy (select line_number, source, source_record_id, client_id, "
            "coalesce(allowed, false) as allowed, result, basis_event_id "
            "from segment_result order by line_number) to stdout (format csv, header true)"
        ) as copy,
    ):
        for block in copy:
            out.write(block)
