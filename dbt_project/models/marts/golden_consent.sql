-- The current status per client x purpose x channel x partner: the consent_history interval
-- that contains now(), with every event that supports it (DESIGN section 6). Rebuilt on every
-- run (and nightly), so consents that expire by the clock move to `expired` without new data.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    indexes=[
        {'columns': ['client_id', 'purpose', 'channel', 'partner_code'], 'unique': True},
        {'columns': ['purpose', 'channel', 'status']},
    ],
) }}
with current_intervals as (
    select *
    from {{ ref('consent_history') }}
    where valid_from <= now() and (valid_to is null or valid_to > now())
),

last_revocation as (
    select client_id, purpose, channel, partner_code, max(effective_at) as revoked_at
    from {{ ref('int_consent_key_events') }}
    where action in ('revoke', 'restrict') and effective_at <= now()
    group by 1, 2, 3, 4
),

supporting_grants as (
    -- every grant that holds the consent open now (several products can each grant it)
    select e.client_id, e.purpose, e.channel, e.partner_code,
           array_agg(e.event_id order by e.effective_at, e.event_id) as event_ids,
           max(e.ends_at) as valid_until
    from {{ ref('int_consent_key_events') }} e
    left join last_revocation r using (client_id, purpose, channel, partner_code)
    where e.action = 'grant' and e.effective_at <= now()
      and e.ends_at > now()
      and (r.revoked_at is null or e.effective_at > r.revoked_at)
    group by 1, 2, 3, 4
)

select
    c.client_id,
    c.purpose,
    c.channel,
    c.partner_code,
    c.status,
    c.valid_from,
    case when c.status = 'granted' then nullif(g.valid_until, 'infinity') else c.valid_to end
                                                        as valid_until,
    case when c.status = 'granted' and g.event_ids is not null then g.event_ids
         else array[c.basis_event_id] end               as basis_event_ids,
    c.valid_from                                        as last_changed_at
from current_intervals c
left join supporting_grants g using (client_id, purpose, channel, partner_code)
