-- Consents that expire within the next N days and those that expired in the last N days
-- (DESIGN section 8), by client, purpose and channel, with the product or source behind each.
-- N is the dbt var `expiring_days`, else the environment variable CONSENT_EXPIRING_DAYS, else 30.
{{ config(materialized='table') }}
{% set days = var('expiring_days', env_var('CONSENT_EXPIRING_DAYS', '30')) | int %}
with expiring as (
    select g.client_id, g.purpose, g.channel, g.partner_code, 'expiring'::text as state,
           g.valid_until as expires_at, basis.event_id
    from {{ ref('golden_consent_at_run') }} g
    -- the grant that holds the consent open longest decides when it really ends
    cross join lateral (
        select e.event_id from {{ ref('consent_event') }} e
        where e.event_id = any(g.basis_event_ids)
        order by e.valid_until desc nulls first, e.event_id limit 1
    ) basis
    where g.status = 'granted'
      and g.valid_until > {{ as_of() }} and g.valid_until <= {{ as_of() }} + interval '{{ days }} days'
),

expired as (
    select h.client_id, h.purpose, h.channel, h.partner_code, 'expired'::text,
           h.valid_from, h.basis_event_id
    from {{ ref('consent_history') }} h
    where h.status = 'expired'
      and h.valid_from <= {{ as_of() }} and h.valid_from > {{ as_of() }} - interval '{{ days }} days'
)

select
    r.client_id, r.purpose, r.channel, r.partner_code, r.state, r.expires_at,
    e.source, e.source_record_id, e.process, e.contract_number, e.detail, e.event_id
from (select * from expiring union all select * from expired) r
join {{ ref('consent_event') }} e on e.event_id = r.event_id
