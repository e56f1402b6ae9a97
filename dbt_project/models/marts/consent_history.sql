-- The full status history per client x purpose x channel x partner (DESIGN rules 2-6):
-- non-overlapping intervals, so the status at any instant is one row.
--
-- How it is computed (set-based, one pass of window functions per key):
--  1. counted events become rows of a timeline per key: grant start, grant end, revocation,
--     restriction start and end. Channel `any` is every concrete channel; a revocation without
--     a partner applies to that purpose/channel for every partner; a partner restriction
--     applies to every purpose on its channel.
--  2. Revocations cut the timeline into segments. Only grants that started after the last
--     revocation (strictly: a revocation at the very instant of a grant wins) can make the
--     status `granted`, so a tick re-exported with an old set_at never re-opens anything, and a
--     later grant re-opens exactly its own keys.
--  3. At every instant where something happens the status is, in this order: `restricted`
--     (a partner restriction in force, or a restriction request), `granted` (a grant of the
--     current segment still runs), `revoked` (the latest grant-or-revocation is a revocation),
--     `expired` (a grant existed and ran out), else no row.
--  4. Consecutive instants with the same status and basis merge into one interval.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    indexes=[{'columns': ['client_id', 'purpose', 'channel', 'partner_code', 'valid_from']}],
    post_hook=["{{ create_consent_status_function() }}"],
) }}
with key_events as (
    select * from {{ ref('int_consent_key_events') }}
),

timeline as (
    -- kind_order breaks ties at one instant: ends first, then grant starts, then revocations
    -- (so a grant and a revocation at the same instant leave the grant revoked)
    select client_id, purpose, channel, partner_code,
           effective_at as ts, 1 as kind_order, 'grant' as kind, event_id, ends_at
    from key_events where action = 'grant'
    union all
    select client_id, purpose, channel, partner_code, ends_at, 0, 'grant_end', event_id, null
    from key_events where action = 'grant' and ends_at < 'infinity'
    union all
    select client_id, purpose, channel, partner_code, effective_at, 2, action, event_id, null
    from key_events where action in ('revoke', 'restrict')
    union all
    select client_id, purpose, channel, partner_code,
           effective_at, 3, 'restriction_start', event_id, ends_at
    from key_events where action = 'partner_restriction'
    union all
    select client_id, purpose, channel, partner_code, ends_at, 0, 'restriction_end', event_id, null
    from key_events where action = 'partner_restriction' and ends_at < 'infinity'
),

segmented as (
    select
        t.*,
        sum(case when kind in ('revoke', 'restrict') then 1 else 0 end) over key_order
            as segment,
        sum(case when kind = 'restriction_start' then 1
                 when kind = 'restriction_end' then -1 else 0 end) over key_order
            as restrictions_in_force,
        max(case when kind = 'grant' then ts end) over key_order as last_grant_at,
        max(case when kind = 'grant' then {{ sortable_ts('ts') }}
                 || event_id end) over key_order as last_grant_key,
        max(case when kind = 'restriction_start'
                 then {{ sortable_ts('ts') }} || event_id end)
            over key_order as last_restriction_key,
        row_number() over (
            partition by client_id, purpose, channel, partner_code, ts
            order by kind_order desc, event_id desc
        ) as last_at_instant
    from timeline t
    window key_order as (
        partition by client_id, purpose, channel, partner_code
        order by ts, kind_order, event_id
        rows between unbounded preceding and current row
    )
),

with_segment as (
    select
        s.*,
        max(case when kind = 'grant' then ends_at end) over segment_order as segment_grant_end,
        max(case when kind = 'grant'
                 then {{ sortable_ts('ends_at') }} || event_id end)
            over segment_order as segment_grant_key,
        first_value(ts) over segment_order as segment_start_at,
        first_value(event_id) over segment_order as segment_start_event,
        first_value(kind) over segment_order as segment_start_kind
    from segmented s
    window segment_order as (
        partition by client_id, purpose, channel, partner_code, segment
        order by ts, kind_order, event_id
        rows between unbounded preceding and current row
    )
),

statuses as (
    select
        client_id, purpose, channel, partner_code, ts,
        case
            when restrictions_in_force > 0 then 'restricted'
            when segment_grant_end > ts then 'granted'
            when segment > 0 and (last_grant_at is null or segment_start_at >= last_grant_at)
                then case when segment_start_kind = 'restrict' then 'restricted' else 'revoked' end
            when last_grant_at is not null then 'expired'
        end as status,
        case
            when restrictions_in_force > 0 then substr(last_restriction_key, 21)
            when segment_grant_end > ts then substr(segment_grant_key, 21)
            when segment > 0 and (last_grant_at is null or segment_start_at >= last_grant_at)
                then segment_start_event
            when last_grant_at is not null then substr(last_grant_key, 21)
        end as basis_event_id
    from with_segment
    where last_at_instant = 1
),

islands as (
    select
        s.*,
        lead(ts) over key_order as next_ts,
        case when status is not distinct from lag(status) over key_order
                  and basis_event_id is not distinct from lag(basis_event_id) over key_order
             then 0 else 1 end as starts_island
    from statuses s
    window key_order as (partition by client_id, purpose, channel, partner_code order by ts)
),

numbered as (
    select i.*, sum(starts_island) over (
        partition by client_id, purpose, channel, partner_code order by ts
        rows between unbounded preceding and current row
    ) as island
    from islands i
)

select
    client_id,
    purpose,
    channel,
    partner_code,
    min(status)                         as status,
    min(ts)                             as valid_from,
    -- the last instant of the island is followed by the next island (or nothing: open)
    (array_agg(next_ts order by ts desc))[1] as valid_to,
    min(basis_event_id)                 as basis_event_id
from numbered
where status is not null
group by client_id, purpose, channel, partner_code, island
