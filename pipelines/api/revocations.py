"""Revocations received through the API (DESIGN section 10): durable before the answer,
idempotent by the caller's request_id, honoured at once by every reader through the overlay of
pipelines/api/tables.py, and folded into consent_event by the next run (source `api`).

Fail safe (DESIGN rule 4): nothing the caller got wrong in a field the revocation does not need
drops it. An unknown purpose or channel code widens that axis to all, a receipt instant that
cannot be read or lies in the future is taken as the instant of arrival, an unknown way of
receipt is kept as `other`, and each case is named in the receipt. Only a revocation that names
nobody (no record, or a source or client the product does not know) is refused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from pipelines.answers import CHANNELS, PURPOSES, SOURCES, AnswerError, UnknownRecord
from pipelines.publication import relation_exists
from pipelines.settings import MOSCOW, consent_now, zoned_instant

RECEIVED_VIA = ("web", "app", "call_centre", "branch", "letter")


class RevocationConflict(ValueError):
    """The request_id was used before for another revocation."""


@dataclass
class RevocationRequest:
    source: str | None = None
    record: str | None = None
    client_id: str | None = None
    purposes: list[str] | str = "all"
    channels: list[str] | str = "all"
    received_at: str | None = None
    received_via: str | None = None
    evidence_url: str | None = None
    request_id: str | None = None


@dataclass
class Receipt:
    revocation_id: str
    effective_from: str
    receipt: dict = field(default_factory=dict)
    created: bool = True


def _axis(value: list[str] | str | None, codes: tuple[str, ...], name: str, doubts: list[str]):
    """The codes of one axis; `all`, an empty list or any unknown code widens it to all."""
    if isinstance(value, str):
        value = [value]
    written = [str(v).strip().lower() for v in (value or [])]
    if not written or "all" in written or (name == "channels" and "any" in written):
        return list(codes)
    if any(code not in codes for code in written):
        doubts.append(f"{name}_unknown_code_widened_to_all")
        return list(codes)
    return sorted(set(written))


def _received_at(text: str | None, now: datetime, doubts: list[str]) -> datetime:
    if not text:
        return now
    try:
        value = zoned_instant(datetime.fromisoformat(str(text)))
    except ValueError:
        doubts.append("received_at_unreadable_taken_as_arrival")
        return now
    if value > now:
        doubts.append("received_at_in_future_taken_as_arrival")
        return now
    return value


def _request_digest(request: RevocationRequest) -> str:
    payload = json.dumps(request.__dict__, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def receive(conn: psycopg.Connection, key_name: str, request: RevocationRequest) -> Receipt:
    """Store one revocation (committed, synchronously, before returning) or find the one this
    key already sent under the same request_id."""
    by_record = request.source is not None or request.record is not None
    if by_record == (request.client_id is not None):
        raise AnswerError("name either source and record, or client_id")
    if by_record and (not request.source or not request.record):
        raise AnswerError("source and record go together")
    if by_record and request.source not in SOURCES:
        raise AnswerError(f"source must be one of: {', '.join(SOURCES)}")
    doubts: list[str] = []
    purposes = _axis(request.purposes, PURPOSES, "purposes", doubts)
    channels = _axis(request.channels, CHANNELS, "channels", doubts)
    if channels == list(CHANNELS):
        channels = ["any"]
    now = consent_now()
    received_at = _received_at(request.received_at, now, doubts)
    via = (request.received_via or "").strip().lower()
    if via not in RECEIVED_VIA:
        doubts.append("received_via_unknown_kept_as_other")
        via = "other"
    request_id = request.request_id
    if not request_id:
        doubts.append("no_request_id_not_idempotent")
        request_id = "generated:" + uuid.uuid4().hex
    digest = _request_digest(request)
    with conn.transaction():
        conn.execute("set local synchronous_commit = on")
        existing = _existing(conn, key_name, request_id)
        if existing is not None:
            return _answer_again(existing, digest)
        client_id, subject = _client(conn, request)
        revocation_id = "rv" + uuid.uuid4().hex[:20]
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """
                insert into consent.api_revocation
                    (revocation_id, key_name, request_id, request_sha256, source,
                     source_record_id, client_id, subject_source, subject_record_id, purposes,
                     channels, received_at, received_via, evidence_url, doubt_reason,
                     fold_event_id, created_at)
                values (%(id)s, %(key)s, %(rid)s, %(sha)s, %(source)s, %(record)s, %(client)s,
                        %(subject_source)s, %(subject_record)s, %(purposes)s, %(channels)s,
                        %(at)s, %(via)s, %(url)s, %(doubt)s, %(fold)s, %(now)s)
                on conflict (key_name, request_id) do nothing
                returning *
                """,
                {
                    "id": revocation_id,
                    "key": key_name,
                    "rid": request_id,
                    "sha": digest,
                    "source": request.source,
                    "record": request.record,
                    "client": client_id,
                    "subject_source": subject[0],
                    "subject_record": subject[1],
                    "purposes": purposes,
                    "channels": channels,
                    "at": received_at,
                    "via": via,
                    "url": request.evidence_url,
                    "doubt": "; ".join(doubts) or None,
                    "fold": fold_event_id(revocation_id, purposes, channels),
                    # the product's clock (CONSENT_NOW when an installation pins it)
                    "now": now,
                },
            ).fetchone()
        if row is None:  # the same request_id, committed meanwhile by a concurrent request
            return _answer_again(_existing(conn, key_name, request_id), digest)
    return _receipt(row, created=True)


def fold_event_id(revocation_id: str, purposes: list[str], channels: list[str]) -> str:
    """The first consent event a run derives from the revocation (int_consent_events__api)."""
    return f"api:{revocation_id}:{purposes[0]}:{channels[0]}"


def _existing(conn, key_name: str, request_id: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select * from consent.api_revocation where key_name = %s and request_id = %s",
            (key_name, request_id),
        ).fetchone()


def _answer_again(row: dict, digest: str) -> Receipt:
    if row["request_sha256"] != digest:
        raise RevocationConflict(
            f"request_id {row['request_id']!r} was used for another revocation "
            f"({row['revocation_id']})"
        )
    return _receipt(row, created=False)


def _client(conn, request: RevocationRequest) -> tuple[str | None, tuple[str, str]]:
    """The client reached at receipt and the subject record: the record named, with its client
    in the published identity (None for a record not known yet: the overlay honours it as soon
    as a run links the record, and the run folds it onto that record's client); or the client
    named, which must be known, and one of its records."""
    published = relation_exists(conn, "consent", "client_xref")
    if request.client_id is not None:
        row = (
            published
            and conn.execute(
                "select source, source_record_id from consent.client_xref where client_id = %s "
                "order by source, source_record_id limit 1",
                (request.client_id,),
            ).fetchone()
        )
        if not row:
            raise UnknownRecord(f"no client {request.client_id!r} is known")
        return request.client_id, (row[0], row[1])
    subject = (request.source, request.record)
    if not published:
        return None, subject
    row = conn.execute(
        "select client_id from consent.client_xref where source = %s and source_record_id = %s",
        subject,
    ).fetchone()
    return (row[0] if row else None), subject


def _receipt(row: dict, *, created: bool) -> Receipt:
    effective = row["received_at"].astimezone(MOSCOW).isoformat()
    receipt = {
        "request_id": row["request_id"],
        "client_id": row["client_id"],
        "source": row["source"],
        "record": row["source_record_id"],
        "purposes": list(row["purposes"]),
        "channels": list(row["channels"]),
        "received_at": effective,
        "received_via": row["received_via"],
        "evidence_url": row["evidence_url"],
        "doubts": row["doubt_reason"].split("; ") if row["doubt_reason"] else [],
        "stored_at": row["created_at"].astimezone(MOSCOW).isoformat(),
        # a record not linked to a client yet is honoured from the moment it is
        "record_known": row["client_id"] is not None,
    }
    return Receipt(row["revocation_id"], effective, receipt, created)
