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


class UnknownRecord(AnswerError):
    """A record (or client) the published identity does not know."""


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


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise AnswerError(f"--source must be one of: {', '.join(SOURCES)}")


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
    """The client of a source record in the published identity (UnknownRecord: none, or
    nothing published yet)."""
    row = None
    if relation_exists(conn, "consent", "client_xref"):
        row = conn.execute(
            "select client_id from consent.client_xref where source = %s and source_record_id = %s",
            (source, record_id),
        ).fetchone()
    if row is None:
        raise UnknownRecord(f"no {source} record {record_id!r} is known (see consent.client_xref)")
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
    check_source(source)
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


@dataclass(frozen=True)
class Question:
    """One can-contact question (the CLI's options, the API's query or batch item)."""

    source: str
    record: str
    purpose: str
    channel: str
    at: datetime
    partner_code: str = ""


#: the deciding grants of a granted status: every grant holding it open at the instant (the
#: same rule as _basis, for many questions at once)
_GRANTS_HOLDING = """
select coalesce(array_agg(e.event_id order by e.effective_at, e.event_id), '{{}}')
from {key_events} e
where e.client_id = s.client_id and e.purpose = s.purpose and e.channel in (s.channel, 'any')
  and e.partner_code = s.partner_code and e.action = 'grant'
  and e.effective_at <= s.at and e.ends_at > s.at
  and e.effective_at > coalesce((
      select max(v.effective_at) from {key_events} v
      where v.client_id = s.client_id and v.purpose = s.purpose and v.channel = s.channel
        and v.partner_code = s.partner_code and v.action in ('revoke', 'restrict')
        and v.effective_at <= s.at), '-infinity')
"""


def can_contact_many(conn: psycopg.Connection, questions: list[Question]) -> list[Answer | None]:
    """The answers to many questions in their order, in three statements whatever their number
    (None: the record is unknown). The codes must have been checked (check_source,
    check_codes). Each answer is the one can_contact gives alone."""
    if not questions:
        return []
    with one_publication(conn):
        if not relation_exists(conn, "consent", "client_xref"):
            return [None] * len(questions)
        columns = list(
            zip(
                *(
                    (q.source, q.record, q.purpose, q.channel, q.partner_code, q.at)
                    for q in questions
                ),
                strict=True,
            )
        )
        statement = sql.SQL(
            """
            with q as (
                select * from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                                     %s::timestamptz[])
                    with ordinality as q(source, record, purpose, channel, partner_code, at, n)
            ),
            s as (
                select q.*, x.client_id, st.status, st.valid_from, st.valid_to,
                       st.basis_event_id
                from q
                left join consent.client_xref x
                    on x.source = q.source and x.source_record_id = q.record
                left join lateral consent.consent_status_at(
                    x.client_id, q.purpose, q.channel, q.partner_code, q.at) st
                    on x.client_id is not null
            )
            select s.n, s.client_id, s.status, s.valid_from, s.valid_to,
                   case when s.status = 'granted' then ({grants})
                        when s.status = 'none' or s.status is null then '{{}}'::text[]
                        else array[s.basis_event_id] end as basis_ids
            from s order by s.n
            """
        ).format(grants=sql.SQL(_GRANTS_HOLDING).format(key_events=_key_events(conn)))
        rows = conn.execute(statement, [list(c) for c in columns]).fetchall()
        ids = sorted({i for row in rows for i in row[5] or ()})
        events = _basis_events(conn, ids)
    answers: list[Answer | None] = []
    for question, (_, client_id, status, valid_from, valid_to, basis_ids) in zip(
        questions, rows, strict=True
    ):
        if client_id is None:
            answers.append(None)
            continue
        answer = Answer(
            allowed=status == "granted",
            status=status,
            client_id=client_id,
            purpose=question.purpose,
            channel=question.channel,
            partner_code=question.partner_code,
            at=_iso(question.at),
            valid_from=_iso(valid_from),
            valid_to=_iso(valid_to),
        )
        answer.basis = sorted(
            (events[i] for i in basis_ids if i in events),
            key=lambda b: (b.effective_at, b.event_id),
        )
        answers.append(answer)
    return answers


def _basis_events(conn: psycopg.Connection, ids: list[str]) -> dict[str, Basis]:
    """The events (and received API revocations) with these ids, as Basis, by id."""
    found: dict[str, Basis] = {}
    received = [i for i in ids if i.startswith(API_BASIS_PREFIX)]
    for basis_id in received:
        for basis in _received_basis(conn, basis_id.removeprefix(API_BASIS_PREFIX)):
            found[basis_id] = basis
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select event_id, source, source_record_id, action, effective_at, valid_until, "
            "evidence_url, evidence_level, process, detail from consent.consent_event "
            "where event_id = any(%s)",
            ([i for i in ids if not i.startswith(API_BASIS_PREFIX)],),
        ).fetchall()
    for row in rows:
        found[row["event_id"]] = Basis(
            **{
                **row,
                "effective_at": _iso(row["effective_at"]),
                "valid_until": _iso(row["valid_until"]),
            }
        )
    return found


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
    elif basis_id and basis_id.startswith(API_BASIS_PREFIX):
        return _received_basis(conn, basis_id.removeprefix(API_BASIS_PREFIX))
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


#: the basis of a status the overlay of received API revocations decided (consent_status_at)
API_BASIS_PREFIX = "api-pending:"


def _received_basis(conn: psycopg.Connection, revocation_id: str) -> list[Basis]:
    """A revocation received through the API and not folded by a run yet, as its basis."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select revocation_id, source, source_record_id, client_id, received_at, "
            "received_via, evidence_url from consent.api_revocation where revocation_id = %s",
            (revocation_id,),
        ).fetchone()
    if row is None:
        return []
    return [
        Basis(
            event_id=API_BASIS_PREFIX + row["revocation_id"],
            source="api",
            source_record_id=row["revocation_id"],
            action="revoke",
            effective_at=_iso(row["received_at"]),
            valid_until=None,
            evidence_url=row["evidence_url"],
            evidence_level="api_request",
            process="api_request",
            detail=f"revocation received through the API ({row['received_via']}), "
            "not yet folded by a run",
        )
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
    # revocations received through the API and not folded yet (the overlay of
    # consent_status_at, set-based): the newest covering one per client
    received = (
        "select distinct on (client_id) client_id, revocation_id from "
        "consent.pending_api_revocations where received_at <= %(at)s and %(p)s = any(purposes) "
        "and (%(ch)s = any(channels) or 'any' = any(channels)) "
        "order by client_id, received_at desc, revocation_id"
        if relation_exists(conn, "consent", "pending_api_revocations")
        else "select null::text as client_id, null::text as revocation_id where false"
    )
    conn.execute("drop table if exists segment_result")
    conn.execute(
        f"""
        create temp table segment_result as
        select p.line_number, p.source, p.source_record_id, p.client_id,
               h.status = 'granted' and r.client_id is null as allowed,
               case when not p.known then 'unknown_record'
                    when r.client_id is not null and h.status is distinct from 'restricted'
                        then 'revoked'
                    when h.status is null then 'no_consent'
                    when h.status = 'granted' then 'allowed'
                    else h.status end as result,
               case when r.client_id is not null and h.status is distinct from 'restricted'
                    then '{API_BASIS_PREFIX}' || r.revocation_id
                    else h.basis_event_id end as basis_event_id
        from ({people}) p
        left join consent.consent_history h
            on h.client_id = p.client_id and h.purpose = %(p)s and h.channel = %(ch)s
            and h.partner_code = %(pc)s
            and h.valid_from <= %(at)s and (h.valid_to is null or h.valid_to > %(at)s)
        left join ({received}) r on r.client_id = p.client_id
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
