-- Erase requests and the retention duties that hold them (DESIGN rule 8, section 8): one row per
-- golden client with a helpdesk `erase_data` request, the holds in force and when erasure
-- becomes allowed. The depersonalisation asset (assets/depersonalisation.py) executes the `due`
-- rows and writes consent.depersonalisation_audit, which turns them `done` on the next build.
--
-- Holds (the retention period is the dbt var `retention_years`, default 5):
--  * contract_open: a CRM contract of the client is still open. No end date: the contract must
--    first close, and retention runs `retention_years` from closing.
--  * contract_retention: a contract closed less than `retention_years` ago; ends closed_at +
--    `retention_years`.
--  * consent_after_request: the client gave a consent AFTER the (latest) erase request and it
--    is still granted in golden_consent: the client came back and asked to be processed again,
--    so the older request waits until that consent ends (null end = a consent without a term).
--    Consents given before the request are not holds: the request itself revokes them from its
--    receipt (int_consent_events__helpdesk), and the evidence of every consent is kept anyway
--    (depersonalisation replaces names and contacts, never consent events or evidence links).
--  * client_unresolved: the ticket is not (yet) in client_xref; nothing can be erased safely.
-- allowed_from is the latest of the first request and every retention end, past ones included;
-- null while an indefinite hold applies.
{#- erase requests are few and every CTE looks like one row to the planner: nested loops over
    them cost minutes at 1M clients, hash joins seconds -#}
{{ config(materialized='table', pre_hook=["set local enable_nestloop = off"]) }}
{% set years = var('retention_years', 5) | int %}
with tickets as (
    -- the newest row of every ticket decides what it asks
    select distinct on (ticket_id) ticket_id, received_at, request_type
    from {{ ref('stg_helpdesk__tickets') }}
    where ticket_id is not null
    order by ticket_id, batch_id desc, line_number desc
),

requests as (
    select t.ticket_id, t.received_at, x.client_id,
           -- a ticket without a client is a "client" of its own, so it stays visible
           coalesce(x.client_id, 'ticket:' || t.ticket_id) as client_key
    from tickets t
    left join {{ source('identity', 'client_xref') }} x
        on x.source = 'helpdesk' and x.source_record_id = t.ticket_id
    where t.request_type = 'erase_data'
),

requested as (
    select client_key,
           min(client_id)                                       as client_id,
           array_agg(ticket_id order by received_at, ticket_id) as request_ids,
           min(received_at)                                     as received_at,
           max(received_at)                                     as last_received_at
    from requests
    group by client_key
),

contracts as (
    -- the newest row of every contract (a later batch may close it)
    select contract_id, crm_client_id, contract_number, signed_at, closed_at
    from {{ ref('int_crm__contracts') }}
),

client_contracts as (
    select r.client_key, c.contract_number, c.signed_at, c.closed_at,
           {{ add_months_moscow('c.closed_at', 12 * years) }} as retention_ends_at
    from requested r
    join {{ source('identity', 'client_xref') }} x
        on x.client_id = r.client_id and x.source = 'crm'
    join contracts c on c.crm_client_id = x.source_record_id
),

holds as (
    select client_key, 'contract_open'::text as hold_reason, contract_number as reference,
           signed_at as since, null::timestamptz as hold_until
    from client_contracts
    where closed_at is null

    union all

    select client_key, 'contract_retention', contract_number, closed_at, retention_ends_at
    from client_contracts
    where closed_at is not null and retention_ends_at > {{ as_of() }}

    union all

    select r.client_key, 'consent_after_request',
           string_agg(distinct g.purpose || '/' || g.channel
                      || coalesce(nullif('/' || g.partner_code, '/'), ''), ', '),
           min(g.valid_from),
           case when bool_or(g.valid_until is null) then null else max(g.valid_until) end
    from requested r
    join {{ ref('golden_consent_at_run') }} g on g.client_id = r.client_id
    where g.status = 'granted' and g.valid_from > r.last_received_at
    group by r.client_key

    union all

    select client_key, 'client_unresolved', request_ids[1], received_at, null
    from requested
    where client_id is null
),

held as (
    select client_key,
           count(*)                                                   as hold_count,
           jsonb_agg(jsonb_build_object('reason', hold_reason, 'reference', reference,
                                        'since', since, 'until', hold_until)
                     order by hold_until desc nulls first, hold_reason, reference) as holds,
           bool_or(hold_until is null)                                as indefinite,
           max(hold_until)                                            as last_hold_until
    from holds
    group by client_key
),

deciding as (
    -- the hold that ends last decides (an indefinite one first)
    select distinct on (client_key) client_key, hold_reason, reference, hold_until
    from holds
    order by client_key, hold_until desc nulls first, hold_reason, reference
),

past_retention as (
    select client_key, max(retention_ends_at) as ended_at
    from client_contracts
    where retention_ends_at <= {{ as_of() }}
    group by client_key
),

audit as (
    select client_id, executed_at from {{ source('depersonalisation', 'depersonalisation_audit') }}
),

decided as (
    select
        r.client_id,
        r.request_ids[1]                                           as request_id,
        r.request_ids,
        r.received_at,
        r.last_received_at,
        d.hold_reason,
        d.reference                                                as hold_reference,
        d.hold_until,
        coalesce(h.hold_count, 0)                                  as hold_count,
        coalesce(h.holds, '[]'::jsonb)                             as holds,
        case when coalesce(h.indefinite, false) then null
             else greatest(r.received_at, h.last_hold_until, p.ended_at) end as allowed_from,
        a.executed_at
    from requested r
    left join held h using (client_key)
    left join deciding d using (client_key)
    left join past_retention p using (client_key)
    left join audit a on a.client_id = r.client_id
)

select
    client_id,
    request_id,
    request_ids,
    received_at,
    last_received_at,
    case when executed_at is not null then 'done'
         when hold_count > 0 then 'held'
         else 'due' end                                            as state,
    hold_reason,
    hold_reference,
    hold_until,
    hold_count,
    holds,
    allowed_from,
    executed_at,
    {{ years }}                                                    as retention_years
from decided
