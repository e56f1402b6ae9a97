-- Counted consent events applied to the keys they govern: client x purpose x concrete channel x
-- partner. Channel `any` is every channel; a revocation without a partner applies to its
-- purpose/channel for every partner; a partner restriction applies to every purpose on its
-- channel. consent_history and golden_consent read this, never consent_event directly.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    indexes=[{'columns': ['client_id', 'purpose', 'channel', 'partner_code']}],
) }}
{% set purposes = ['processing', 'storage', 'third_party_transfer', 'marketing', 'analytics'] %}
{% set channels = ['call', 'sms', 'email', 'messenger', 'push', 'post'] %}
with events as (
    select
        e.*,
        ch.value as key_channel
    from {{ ref('consent_event') }} e
    cross join lateral unnest(
        case when e.channel in ('any', 'all') then array[{{ "'" ~ channels | join("', '") ~ "'" }}]::text[]
             else array[e.channel] end
    ) as ch(value)
    where e.is_counted and e.client_id is not null and e.effective_at is not null
),

grants as (
    select client_id, purpose, key_channel as channel, partner_code, event_id, effective_at,
           coalesce(valid_until, 'infinity'::timestamptz) as ends_at
    from events
    where action = 'grant' and purpose is not null
),

revocations as (
    select client_id, purpose, key_channel as channel, partner_code, event_id, effective_at,
           action
    from events
    where action = 'revoke' or (action = 'restrict' and source <> 'partner')
),

restrictions as (
    select client_id, key_channel as channel, event_id, effective_at,
           coalesce(valid_until, 'infinity'::timestamptz) as ends_at
    from events
    where action = 'restrict' and source = 'partner'
),

keys as (
    select client_id, purpose, channel, partner_code from grants
    union
    select client_id, purpose, channel, partner_code from revocations
    union
    select r.client_id, p.value, r.channel, ''
    from restrictions r
    cross join unnest(array[{{ "'" ~ purposes | join("', '") ~ "'" }}]::text[]) as p(value)
)

-- grants define their own keys
select client_id, purpose, channel, partner_code, event_id, 'grant'::text as action,
       effective_at, ends_at
from grants
union all
select k.client_id, k.purpose, k.channel, k.partner_code, r.event_id, r.action,
       r.effective_at, null::timestamptz
from keys k
join revocations r
    on r.client_id = k.client_id and r.purpose = k.purpose and r.channel = k.channel
    and (r.partner_code = '' or r.partner_code = k.partner_code)
union all
select k.client_id, k.purpose, k.channel, k.partner_code, s.event_id, 'partner_restriction',
       s.effective_at, s.ends_at
from keys k
join restrictions s on s.client_id = k.client_id and s.channel = k.channel
