"""The fail-safe overlay of revocations received through the API, in one place (DESIGN
section 10): what consent.consent_status_at, can-contact (CLI and API) and the client card say
before the next run folds a revocation into the derived history.

From its receipt on, a pending revocation (consent.pending_api_revocations, pipelines/api/
tables.py) covering a key makes its status `revoked` (a partner restriction stays
`restricted`), valid from the receipt, open-ended, decided by `api-pending:<revocation_id>`.
Once a run has folded it into consent_event, the view no longer lists it and the derived
history decides alone.

The fragments are SQL templates: `{client}`, `{purpose}`, `{channel}`, `{at}` name the key and
the instant; `{status}`, `{valid_from}`, `{valid_to}`, `{basis}` the derived interval's columns;
`r` is the pending revocation's alias.
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

#: the four overlaid columns: status, valid_from, valid_to, basis event id
OVERLAID = f"""
    case when {_APPLIES} then 'revoked' else {{status}} end,
    case when {_APPLIES} then r.received_at else {{valid_from}} end,
    case when {_APPLIES} then null else {{valid_to}} end,
    case when {_APPLIES} then '{PENDING_BASIS_PREFIX}' || r.revocation_id else {{basis}} end
"""


def pending_covering(**names: str) -> str:
    return PENDING_COVERING.format(**names)


def overlaid(**names: str) -> str:
    return OVERLAID.format(**names)
