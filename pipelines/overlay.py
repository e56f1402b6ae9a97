"""The fail-safe overlay of revocations received through the API, in one place (DESIGN
section 10): what consent.consent_status_at, can-contact (CLI and API) and the client card say
before the next run folds a revocation into the derived history.

From its receipt on, a pending revocation (consent.pending_api_revocations, pipelines/api/
tables.py) covering a key makes its status `revoked` (a partner restriction stays
`restricted`), valid from the receipt, open-ended, decided by `api-pending:<revocation_id>`.
Once a run has folded it into consent_event, the view no longer lists it and the derived
history decides alone.

`pending_covering` and `overlaid` write the rule for one key (the status function, the
answering statement); `GOLDEN_CONSENT_VIEW` writes it set-based for consent.golden_consent,
which marketing reads for its campaigns. `r` is always the pending revocation's alias.
"""

from __future__ import annotations

#: the basis of a status the overlay decided
PENDING_BASIS_PREFIX = "api-pending:"

#: the newest pending revocation covering a key at an instant, as `left join lateral (...) r`
PENDING_COVERING = """
    select p.revocation_id, p.received_at
    from consent.pending_api_revocations p
    where p.client_id = {client} and p.received_at <= {at}
      and {purpose} = any(p.purposes)
      and ({channel} = any(p.channels) or 'any' = any(p.channels))
    order by p.received_at desc, p.revocation_id
    limit 1
"""

_APPLIES = "r.revocation_id is not null and {status} is distinct from 'restricted'"


def overlaid(
    *,
    status: str,
    valid_from: str,
    valid_to: str,
    basis: str,
    basis_array: bool = False,
    names: tuple[str, str, str, str] | None = None,
) -> str:
    """The four overlaid columns: status, valid_from, valid_to and the basis (one event id, or
    with `basis_array` an array of them), named `names` if given."""
    applies = _APPLIES.format(status=status)
    pending = f"'{PENDING_BASIS_PREFIX}' || r.revocation_id"
    columns = [
        f"case when {applies} then 'revoked' else {status} end",
        f"case when {applies} then r.received_at else {valid_from} end",
        f"case when {applies} then null else {valid_to} end",
        f"case when {applies} then {f'array[{pending}]' if basis_array else pending} "
        f"else {basis} end",
    ]
    if names:
        columns = [f"{column} as {name}" for column, name in zip(columns, names, strict=True)]
    return ",\n    ".join(columns)


def pending_covering(**names: str) -> str:
    return PENDING_COVERING.format(**names)


#: every (client, purpose, concrete channel) key a pending revocation covers, for the set-based
#: overlay of consent.golden_consent. Security definer: a marketing login reads golden_consent,
#: never the revocations themselves; a function, not a view, so that the published views do
#: not depend on the pending view, which each full publication makes again
PENDING_KEYS_FUNCTION = """
create or replace function consent.pending_api_revocation_keys()
returns table (client_id text, purpose text, channel text, revocation_id text,
               received_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $fn$
    select p.client_id, k.purpose, c.channel, p.revocation_id, p.received_at
    from consent.pending_api_revocations p
    cross join lateral unnest(p.purposes) as k(purpose)
    cross join lateral unnest(case when 'any' = any(p.channels)
                                   then array['call', 'sms', 'email', 'messenger', 'push', 'post']
                                   else p.channels end) as c(channel)
$fn$
"""
#: after the roles exist (pipelines/publication.py applies them first)
PENDING_KEYS_GRANTS = """
revoke all on function consent.pending_api_revocation_keys() from public;
grant execute on function consent.pending_api_revocation_keys()
    to consent_dpo, consent_analyst, consent_marketing;
"""

#: consent.golden_consent: the generation's, with the pending revocations overlaid at the
#: reader's instant (the session's consent.now when set, as golden_consent reads, else now()).
#: Its columns are golden_consent's own, in its order: `create or replace view` keeps the
#: readers' grants and views.
GOLDEN_CONSENT_VIEW = (
    """
create or replace view consent.golden_consent as
select g.client_id, g.purpose, g.channel, g.partner_code,
    """
    + overlaid(
        status="g.status",
        valid_from="g.valid_from",
        valid_to="g.valid_until",
        basis="g.basis_event_ids",
        basis_array=True,
        names=("status", "valid_from", "valid_until", "basis_event_ids"),
    )
    + """,
    case when r.revocation_id is not null and g.status is distinct from 'restricted'
         then r.received_at else g.last_changed_at end as last_changed_at
from {golden} g
left join (
    select distinct on (client_id, purpose, channel) *
    from consent.pending_api_revocation_keys()
    where received_at <= coalesce(nullif(current_setting('consent.now', true), '')::timestamptz,
                                  now())
    order by client_id, purpose, channel, received_at desc, revocation_id
) r on r.client_id = g.client_id and r.purpose = g.purpose and r.channel = g.channel
"""
)
