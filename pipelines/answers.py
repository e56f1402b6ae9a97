"""Answers for people: may we contact this person (or these people) now or at an instant, and why.

Both questions are answered from the golden tables with set-based SQL: one record is a lookup
on consent_history's key index; a segment of any size is one COPY in and one join.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import psycopg
from psycopg import sql

from pipelines import overlay
from pipelines.publication import (
    READERS_LOCK,
    READERS_LOCK_SQL,
    one_publication,
    relation_exists,
)
from pipelines.settings import MOSCOW, consent_now, zoned_instant

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
    try:
        return zoned_instant(value)
    except ValueError as error:
        raise AnswerError(f"--at {text!r}: {error}") from error


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


@dataclass(frozen=True)
class Question:
    """One can-contact question (the CLI's options, the API's query or batch item)."""

    source: str
    record: str
    purpose: str
    channel: str
    at: datetime
    partner_code: str = ""


def can_contact(
    conn: psycopg.Connection,
    source: str,
    record_id: str,
    purpose: str,
    channel: str,
    at: datetime,
    partner_code: str = "",
) -> Answer:
    """May we contact the person behind this record (UnknownRecord, AnswerError: the question
    cannot be answered as asked)."""
    check_source(source)
    check_codes(purpose, channel)
    (answer,) = can_contact_many(
        conn, [Question(source, record_id, purpose, channel, at, partner_code)]
    )
    if answer is None:
        raise UnknownRecord(f"no {source} record {record_id!r} is known (see consent.client_xref)")
    return answer


#: the basis of a status the overlay of received API revocations decided (consent_status_at)
API_BASIS_PREFIX = overlay.PENDING_BASIS_PREFIX
_COVERING = overlay.pending_covering(
    client="k.client_id", at="k.at", purpose="k.purpose", channel="k.channel"
).replace("%", "%%")
_OVERLAY = overlay.overlaid(
    status="k.derived_status", valid_from="k.derived_from", valid_to="k.derived_to",
    basis="k.derived_basis",
)  # fmt: skip

# Every question in one statement, so that an answer reads one publication whatever the number
# of questions (a statement sees one snapshot; a publication swaps the views in one
# transaction), in one round trip for a single question. Per question: its client, the status
# at its instant (consent.consent_status_at: the history, with revocations received through
# the API and not folded yet overlaid), and the deciding events: every grant holding a granted
# consent open at the instant, else the one event of the interval (or the received revocation).
_ANSWERS = """
with q as (
    select * from unnest(%(s)s::text[], %(r)s::text[], %(p)s::text[], %(c)s::text[],
                         %(pc)s::text[], %(at)s::timestamptz[])
        with ordinality as q(source, record, purpose, channel, partner_code, at, n)
),
k as (
    -- the status at the instant: the history's interval (consent.consent_status_at's own
    -- rule, written out here so that the statement reads only views, which a publication
    -- swaps all at once: the whole answer is this one statement)
    select q.*, x.client_id, coalesce(h.status, 'none') as derived_status,
           h.valid_from as derived_from, h.valid_to as derived_to, h.basis_event_id as derived_basis
    from q
    left join consent.client_xref x on x.source = q.source and x.source_record_id = q.record
    left join consent.consent_history h
        on h.client_id = x.client_id and h.purpose = q.purpose and h.channel = q.channel
        and h.partner_code = q.partner_code
        and h.valid_from <= q.at and (h.valid_to is null or h.valid_to > q.at)
),
s as (
    -- with the revocations received through the API and not folded yet overlaid
    select k.*, o.status, o.valid_from, o.valid_to, o.basis_event_id
    from k
    left join lateral ({covering}) r on k.client_id is not null
    cross join lateral (select {overlay}) as o(status, valid_from, valid_to, basis_event_id)
),
decided as (
    select s.*,
           case when s.status = 'granted' then (
               -- a channel-uniform group's grants are stored once, under channel `any`
               select coalesce(array_agg(e.event_id order by e.effective_at, e.event_id), '{{}}')
               from {key_events} e
               where e.client_id = s.client_id and e.purpose = s.purpose
                 and e.channel in (s.channel, 'any') and e.partner_code = s.partner_code
                 and e.action = 'grant' and e.effective_at <= s.at and e.ends_at > s.at
                 and e.effective_at > coalesce((
                     select max(v.effective_at) from {key_events} v
                     where v.client_id = s.client_id and v.purpose = s.purpose
                       and v.channel = s.channel and v.partner_code = s.partner_code
                       and v.action in ('revoke', 'restrict') and v.effective_at <= s.at),
                     '-infinity'))
                when s.basis_event_id is null then '{{}}'::text[]
                else array[s.basis_event_id] end as basis_ids
    from s
){log}
select d.n, d.client_id, d.status, d.valid_from, d.valid_to, (
    select coalesce(json_agg(b order by b.effective_at, b.event_id), '[]'::json)
    from (
        select e.event_id, e.source, e.source_record_id, e.action, e.effective_at,
               e.valid_until, e.evidence_url, e.evidence_level, e.process, e.detail
        from consent.consent_event e
        where e.event_id = any(d.basis_ids)
        union all
        select '{pending}' || r.revocation_id, 'api', r.revocation_id, 'revoke',
               r.received_at, null, r.evidence_url, 'api_request', 'api_request',
               'revocation received through the API (' || r.received_via
                   || '), not yet folded by a run'
        from consent.api_revocation r
        where r.revocation_id = any(array(
            select substr(i, {skip}) from unnest(d.basis_ids) i where i like '{pending}%%'))
    ) b
) as basis
from decided d
order by d.n
"""

#: the access log row of each question (pipelines/api: consent.api_access_log), written by the
#: answering statement itself
_LOG = """,
logged as (
    insert into consent.api_access_log
        (key_name, endpoint, client_id, source, record_id, status_code)
    select %(key)s, %(endpoint)s, client_id, source, record,
           case when client_id is null then 404 else 200 end
    from s
)"""

#: relations that, once they exist, stay (published names are views kept across publications)
_SEEN: set[tuple[str, str, str]] = set()


def _database(conn) -> str:
    """Which database a connection is on (the cache of relations seen is per database)."""
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def _exists(conn: psycopg.Connection, schema: str, name: str) -> bool:
    if (_database(conn), schema, name) in _SEEN:
        return True
    if relation_exists(conn, schema, name):
        _SEEN.add((_database(conn), schema, name))
        return True
    return False


#: no revocation pending: a database whose models were built by hand, never published
_NONE_PENDING = "select null::text as revocation_id, null::timestamptz as received_at where false"


@cache
def _answers_statement(key_events: tuple[str, str], logged: bool, pending: bool = True) -> str:
    """The answering statement as text (composed once per process: the server prepares it)."""
    return (
        sql.SQL(_ANSWERS)
        .format(
            key_events=sql.Identifier(*key_events),
            log=sql.SQL(_LOG if logged else ""),
            pending=sql.SQL(API_BASIS_PREFIX),
            skip=sql.Literal(len(API_BASIS_PREFIX) + 1),
            covering=sql.SQL(_COVERING if pending else _NONE_PENDING),
            overlay=sql.SQL(_OVERLAY),
        )
        .as_string(None)
    )


def _answers_params(questions: list[Question], access: tuple[str, str] | None) -> dict:
    params = {
        "s": [q.source for q in questions],
        "r": [q.record for q in questions],
        "p": [q.purpose for q in questions],
        "c": [q.channel for q in questions],
        "pc": [q.partner_code for q in questions],
        "at": [q.at for q in questions],
    }
    if access:
        params["key"], params["endpoint"] = access
    return params


def _answers_of(questions: list[Question], rows: list[tuple]) -> list[Answer | None]:
    answers: list[Answer | None] = []
    for question, (_, client_id, status, valid_from, valid_to, basis) in zip(
        questions, rows, strict=True
    ):
        if client_id is None:
            answers.append(None)
            continue
        answers.append(
            Answer(
                allowed=status == "granted",
                status=status,
                client_id=client_id,
                purpose=question.purpose,
                channel=question.channel,
                partner_code=question.partner_code,
                at=_iso(question.at),
                valid_from=_iso(valid_from),
                valid_to=_iso(valid_to),
                basis=[_basis_of(event) for event in basis],
            )
        )
    return answers


def can_contact_many(
    conn: psycopg.Connection,
    questions: list[Question],
    *,
    access: tuple[str, str] | None = None,
) -> list[Answer | None]:
    """The answers to many questions in their order, in one statement whatever their number
    (None: the record is unknown). The codes must have been checked (check_source,
    check_codes). `access`: (key name, endpoint), to log each question in
    consent.api_access_log in the same statement (the API)."""
    if not questions:
        return []
    if not _exists(conn, "consent", "client_xref"):
        return [None] * len(questions)
    statement = _answers_statement(
        _key_events(conn),
        access is not None,
        _exists(conn, "consent", "pending_api_revocations"),
    )
    with one_publication(conn):
        rows = conn.execute(statement, _answers_params(questions, access)).fetchall()
    return _answers_of(questions, rows)


async def can_contact_many_async(
    conn: psycopg.AsyncConnection,
    questions: list[Question],
    *,
    access: tuple[str, str] | None = None,
) -> list[Answer | None]:
    """can_contact_many on an asyncio connection (the API): the same statement, the same
    answers."""
    if not questions:
        return []
    database = _database(conn)
    if (database, "consent", "client_xref") not in _SEEN:
        cursor = await conn.execute(
            "select to_regclass('consent.client_xref'), to_regclass('consent.consent_key_event')"
        )
        xref, key_events = await cursor.fetchone()
        if xref is None:
            return [None] * len(questions)
        _SEEN.add((database, "consent", "client_xref"))
        if key_events is not None:
            _SEEN.add((database, "consent", "consent_key_event"))
            # published: the overlay's view was made with the published names
            _SEEN.add((database, "consent", "pending_api_revocations"))
    key_events = (
        ("consent", "consent_key_event")
        if (database, "consent", "consent_key_event") in _SEEN
        else ("staging", "int_consent_key_events")
    )
    statement = _answers_statement(
        key_events, access is not None, (database, "consent", "pending_api_revocations") in _SEEN
    )
    # one round trip: a transaction holding the readers' shared lock (a publication takes it
    # exclusively for its swap: this answer waits there holding no lock on any view, so a swap
    # is never starved by a stream of answers) around the statement, pipelined. Written out,
    # not with conn.transaction(), which syncs the pipeline at its start and end
    try:
        async with conn.pipeline():
            await conn.execute("begin")
            await conn.execute(READERS_LOCK_SQL, (READERS_LOCK,))
            cursor = await conn.execute(statement, _answers_params(questions, access))
            await conn.execute("commit")
        rows = await cursor.fetchall()
    except BaseException:
        await conn.rollback()
        raise
    return _answers_of(questions, rows)


def _basis_of(event: dict) -> Basis:
    """A deciding event as json_agg gave it (instants as text), in the answer's form."""
    return Basis(
        **{
            **event,
            "effective_at": _iso(_instant(event["effective_at"])),
            "valid_until": _iso(_instant(event["valid_until"])),
        }
    )


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _key_events(conn: psycopg.Connection) -> tuple[str, str]:
    """The events by concrete key: the published ones (consent.consent_key_event), or, on a
    database whose models were built by hand (`dbt build`, no publication), dbt's own."""
    if _exists(conn, "consent", "consent_key_event"):
        return ("consent", "consent_key_event")
    return ("staging", "int_consent_key_events")


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
