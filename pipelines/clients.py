"""What the product knows about one golden client, for the people who look clients up (DPO): its
best-known identity, its source records, its consents now and its history with the events that
decided each interval. Shared by the API (`/v1/clients/{id}`) and, later, the evidence pack.

Current consents come from consent.consent_status_at, key by key, so that they say exactly what
can-contact says (revocations received through the API included).
"""

from __future__ import annotations

from datetime import date, datetime

import psycopg
from psycopg.rows import dict_row

from pipelines.answers import UnknownRecord, _iso
from pipelines.publication import one_publication, relation_exists


def _plain(row: dict) -> dict:
    return {
        key: _iso(value) if isinstance(value, datetime)
        else value.isoformat() if isinstance(value, date)
        else value
        for key, value in row.items()
    }  # fmt: skip


def client_card(conn: psycopg.Connection, client_id: str, at: datetime) -> dict:
    """The golden client, its records and its consents at `at` (UnknownRecord: not known)."""
    with one_publication(conn), conn.cursor(row_factory=dict_row) as cur:
        if not relation_exists(conn, "consent", "golden_client"):
            raise UnknownRecord(f"no client {client_id!r} is known")
        client = cur.execute(
            "select client_id, last_name, first_name, middle_name, birth_date, phone, email, "
            "source_record_count from consent.golden_client where client_id = %s",
            (client_id,),
        ).fetchone()
        if client is None:
            raise UnknownRecord(f"no client {client_id!r} is known")
        records = cur.execute(
            "select source, source_record_id, match_probability from consent.client_xref "
            "where client_id = %s order by source, source_record_id",
            (client_id,),
        ).fetchall()
        consents = cur.execute(
            """
            select k.purpose, k.channel, k.partner_code, s.status, s.status = 'granted' as allowed,
                   s.valid_from, s.valid_to, s.basis_event_id
            from (select distinct purpose, channel, partner_code from consent.golden_consent
                  where client_id = %(c)s) k
            cross join lateral consent.consent_status_at(
                %(c)s, k.purpose, k.channel, k.partner_code, %(at)s) s
            order by k.purpose, k.channel, k.partner_code
            """,
            {"c": client_id, "at": at},
        ).fetchall()
    return {
        "client": _plain(client),
        "records": [_plain(r) for r in records],
        "at": _iso(at),
        "consents": [_plain(c) for c in consents],
    }


def client_history(conn: psycopg.Connection, client_id: str) -> dict:
    """Every consent interval of the client, oldest first, with the event that decided it."""
    with one_publication(conn), conn.cursor(row_factory=dict_row) as cur:
        known = (
            relation_exists(conn, "consent", "client_xref")
            and cur.execute(
                "select 1 from consent.client_xref where client_id = %s limit 1", (client_id,)
            ).fetchone()
        )
        if not known:
            raise UnknownRecord(f"no client {client_id!r} is known")
        rows = cur.execute(
            """
            select h.purpose, h.channel, h.partner_code, h.status, h.valid_from, h.valid_to,
                   h.basis_event_id, e.source, e.source_record_id, e.action, e.effective_at,
                   e.evidence_url, e.evidence_level, e.process
            from consent.consent_history h
            left join consent.consent_event e on e.event_id = h.basis_event_id
            where h.client_id = %s
            order by h.purpose, h.channel, h.partner_code, h.valid_from
            """,
            (client_id,),
        ).fetchall()
    intervals = []
    for row in rows:
        row = _plain(row)
        event_keys = ("source", "source_record_id", "action", "effective_at", "evidence_url",
                      "evidence_level", "process")  # fmt: skip
        event = {k: row.pop(k) for k in event_keys}
        row["basis"] = (
            {"event_id": row["basis_event_id"], **event} if row["basis_event_id"] else None
        )
        intervals.append(row)
    return {"client_id": client_id, "intervals": intervals}
