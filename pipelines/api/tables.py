"""The overlay that honours a revocation received through the API before any run folds it into
consent_event (the API's tables themselves: sources/api_store.py).

`consent.pending_api_revocations` lists the revocations not folded yet, each under every client
it reaches now: the client named or reached at receipt, and the client its record belongs to in
the published identity (a merge since receipt carries it along). The published
`consent.consent_status_at` (pipelines/publication.py) overlays them fail-safe on the derived
history, and so do the CLI's segment and the API.
"""

from __future__ import annotations

import psycopg

from sources.api_store import API_DDL
from sources.schema import ddl_applied

#: needs the published consent.client_xref and consent.consent_event (created at publication)
PENDING_VIEW = """
create or replace view consent.pending_api_revocations as
with reached as (
    select r.revocation_id, r.client_id
    from consent.api_revocation r
    where r.client_id is not null
    union
    select r.revocation_id, x.client_id
    from consent.api_revocation r
    join consent.client_xref x
        on x.source = r.subject_source and x.source_record_id = r.subject_record_id
)
select c.client_id, r.revocation_id, r.purposes, r.channels, r.received_at, r.received_via,
       r.evidence_url, r.source, r.source_record_id
from reached c
join consent.api_revocation r using (revocation_id)
where not exists (select 1 from consent.consent_event e where e.event_id = r.fold_event_id);
comment on view consent.pending_api_revocations is
    'API revocations not yet folded into consent_event by a run, by every client they reach now.';
"""


def ensure_api_tables(conn: psycopg.Connection) -> None:
    """Create the API's tables if missing (idempotent; serve, api-key and every publication).

    Nothing is executed when they all exist: the DDL's locks would be held by the caller's
    transaction (see sources.schema.ddl_applied)."""
    if ddl_applied(conn, API_DDL):
        return
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('consent-center:schema'))")
        conn.execute(API_DDL)


def ensure_pending_view(conn: psycopg.Connection) -> None:
    """The overlay's view, once the published identity and events exist."""
    conn.execute(PENDING_VIEW)
