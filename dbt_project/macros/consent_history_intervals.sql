{#-
   The full status history per client x purpose x channel x partner (DESIGN rules 2-6):
   non-overlapping intervals, so the status at any instant is one row.
  
   How it is computed (set-based window functions over one sorted timeline per key):
    1. counted events become rows of a timeline per key: grant start, grant end, revocation,
       restriction start and end. Channel `any` is every concrete channel; a revocation without
       a partner applies to that purpose/channel for every partner; a partner restriction
       applies to every purpose on its channel.
    2. Revocations cut the timeline into segments. Only grants that started after the last
       revocation (strictly: a revocation at the very instant of a grant wins) can make the
       status `granted`, so a tick re-exported with an old set_at never re-opens anything, and a
       later grant re-opens exactly its own keys.
    3. At every instant where something happens the status is, in this order: `restricted`
       (a partner restriction in force, or a restriction request), `granted` (a grant of the
       current segment still runs), `revoked` (the latest grant-or-revocation is a revocation),
       `expired` (a grant existed and ran out), else no row.
    4. Consecutive instants with the same status and basis merge into one interval.
   Performance: the timeline is sorted once (per key by instant, kind, event); every window
   below keeps that order, and "latest of" / "longest running" are max() over fixed-width text
   keys, so nothing is sorted twice (at 1M clients this is about 30 M timeline rows).

   Used for the keys with a revocation or restriction; keys with grants only take the cheaper
   consent_history_grants_only below (same result), in the same table (consent_history_part).
-#}
{% macro consent_history_intervals(key_events, where='true') %}
with timeline as (
    -- Each key event becomes one or two timeline rows (its start; the end of a grant or partner
    -- restriction). kind_order breaks ties at one instant: ends first, then grant starts, then
    -- revocations (so a grant and a revocation at the same instant leave the grant revoked),
    -- then restriction starts. ts_key and ends_key are the instants as fixed-width text, computed
    -- once per row, so "the latest grant" and "the grant that runs longest" are plain max() over
    -- `key || event_id`. One scan in key order (the key index) keeps the rows grouped by key, so
    -- PostgreSQL sorts each key's few rows in memory instead of one sort of the whole timeline.
    select k.client_id, k.purpose, k.channel, k.partner_code, v.ts, v.kind_order, v.kind,
           k.event_id, {{ sortable_ts('v.ts') }} as ts_key,
           case when v.kind = 'grant' then {{ sortable_ts('k.ends_at') }} end as ends_key
    from {{ key_events }} k
    cross join lateral (
        values
            (k.effective_at,
             case k.action when 'grant' then 1 when 'partner_restriction' then 3 else 2 end,
             case k.action when 'partner_restriction' then 'restriction_start'
                           else k.action end),
            (case when k.action in ('grant', 'partner_restriction') and k.ends_at < 'infinity'
                  then k.ends_at end,
             0,
             case k.action when 'grant' then 'grant_end' else 'restriction_end' end)
    ) as v (ts, kind_order, kind)
    where v.ts is not null and {{ where }}
),

running as (
    -- the only sort of the model: every later window keeps this order. Running values per key,
    -- up to and including the current row.
    select
        t.*,
        count(*) filter (where kind in ('revoke', 'restrict')) over key_order as segment,
        sum(case when kind = 'restriction_start' then 1
                 when kind = 'restriction_end' then -1 else 0 end) over key_order
            as restrictions_in_force,
        max(ts_key || event_id) filter (where kind = 'grant') over key_order as last_grant_key,
        max(ts_key || event_id) filter (where kind = 'restriction_start') over key_order
            as last_restriction_key,
        -- the revocation that opened the current segment (the latest so far), and its kind
        max(ts_key || event_id || chr(1) || kind)
            filter (where kind in ('revoke', 'restrict')) over key_order as segment_start_key,
        lead(ts) over key_order as next_row_ts
    from timeline t
    window key_order as (
        partition by client_id, purpose, channel, partner_code
        order by ts, kind_order, event_id
        rows between unbounded preceding and current row
    )
),

with_segment as (
    -- the grant of the current segment that runs longest: segments only grow along a key, so
    -- the maximum of (segment, end, event) belongs to the current segment when its prefix says so
    select
        r.*,
        lpad(segment::text, 10, '0') as segment_key,
        max(lpad(segment::text, 10, '0') || ends_key || event_id)
            filter (where kind = 'grant') over key_order as segment_grant_key
    from running r
    window key_order as (
        partition by client_id, purpose, channel, partner_code
        order by ts, kind_order, event_id
        rows between unbounded preceding and current row
    )
),

statuses as (
    -- the last row at each instant decides the status from that instant on
    select
        client_id, purpose, channel, partner_code, ts, kind_order, event_id,
        case
            when restrictions_in_force > 0 then 'restricted'
            when grant_runs then 'granted'
            when revoked_since_last_grant
                then case when right(segment_start_key, 8) = 'restrict'
                          then 'restricted' else 'revoked' end
            when last_grant_key is not null then 'expired'
        end as status,
        case
            when restrictions_in_force > 0 then substr(last_restriction_key, 21)
            when grant_runs then substr(segment_grant_key, 31)
            when revoked_since_last_grant
                then split_part(substr(segment_start_key, 21), chr(1), 1)
            when last_grant_key is not null then substr(last_grant_key, 21)
        end as basis_event_id
    from (
        select
            w.*,
            coalesce(left(segment_grant_key, 10) = segment_key
                     and substr(segment_grant_key, 11, 20) > ts_key, false) as grant_runs,
            segment > 0 and (last_grant_key is null
                             or left(segment_start_key, 20) >= left(last_grant_key, 20))
                as revoked_since_last_grant
        from with_segment w
        where next_row_ts is distinct from ts
    ) last_at_instant
    -- evaluated once per row here, not again inside each window function that reads it; the
    -- rows already come in this order, so the ORDER BY only tells the planner so
    order by client_id, purpose, channel, partner_code, ts, kind_order, event_id
    offset 0
),

island_starts as (
    -- a new interval starts wherever status or basis changes (a null status ends one)
    select *
    from (
        select
            s.*,
            status is not distinct from lag(status) over key_order
                and basis_event_id is not distinct from lag(basis_event_id) over key_order
                as continues
        from statuses s
        window key_order as (
            partition by client_id, purpose, channel, partner_code
            order by ts, kind_order, event_id
        )
    ) marked
    where not continues
),

intervals as (
    select
        i.*,
        lead(ts) over (
            partition by client_id, purpose, channel, partner_code
            order by ts, kind_order, event_id
        ) as valid_to
    from island_starts i
)

select
    client_id,
    purpose,
    channel,
    partner_code,
    status,
    ts                                  as valid_from,
    valid_to,
    basis_event_id
from intervals
where status is not null
{% endmacro %}

{#-
   The history of a key that carries nothing but grants (about 9 keys in 10): the same result as
   consent_history_intervals gives such a key, by a path with no timeline rows, no sort and
   narrow rows. With no revocation the status at an instant is `granted` while the grant that
   runs longest so far (M) has not ended, else `expired`; the basis is M while granted, else the
   latest grant started. So the status can only change where a grant starts or where M ends:
    1. one pass over the grants in time order: M's end and id, M as it stood at the previous
       instant, and the next instant;
    2. per instant (its last grant), the state entered there and whether M ends before the next
       instant (an expiry inside, whose basis is that instant's grant);
    3. a granted state continues the previous instant's when M is the same (M then runs past
       this instant, so it cannot have ended in between); an expired state never continues
       (each new instant has a new latest grant);
    4. intervals start at the instants that do not continue and at the expiries inside, and
       end where the next one starts.
   A key with a single grant (`key_event_count` 1, half the keys at scale) skips the windows:
   granted from its start to its end, then expired.
-#}
{% macro consent_history_grants_only(key_events, where='true') %}
with running as (
    select
        client_id, purpose, channel, partner_code, event_id, effective_at,
        max(ends_at) over key_order                                 as longest_end,
        max(end_key) over key_order                                 as longest_key,
        -- M as it stood at the previous instant (the grants of every earlier instant)
        max(end_key) over earlier_instants                          as earlier_longest_key,
        lead(effective_at) over key_order                           as next_at
    from (
        select k.*, {{ sortable_ts('k.ends_at') }} || k.event_id as end_key
        from {{ key_events }} k
        where {{ where }} and k.key_event_count is distinct from 1
    ) grants
    window
        key_order as (
            partition by client_id, purpose, channel, partner_code
            order by effective_at, event_id
            rows between unbounded preceding and current row
        ),
        -- ordered by a prefix of key_order's order: computed from the same sorted rows
        earlier_instants as (
            partition by client_id, purpose, channel, partner_code
            order by effective_at
            groups between unbounded preceding and 1 preceding
        )
),

boundaries as materialized (
    -- the last grant at each instant decides the state entered there; intervals start where
    -- the state does not continue and where M ends before the next instant (`next_cut` is
    -- where the next boundary ends the open interval)
    select
        i.*,
        lead(case when continues then longest_end else effective_at end) over (
            partition by client_id, purpose, channel, partner_code order by effective_at, event_id
        )                                                           as next_cut
    from (
        select
            client_id, purpose, channel, partner_code, event_id, effective_at, longest_end,
            next_at,
            longest_end > effective_at                              as granted,
            substr(longest_key, 21)                                 as longest_grant_id,
            longest_end > effective_at
                and longest_end < coalesce(next_at, 'infinity')     as expires_before_next,
            -- granted with the same M as the previous instant: M then still ran in between
            coalesce(longest_end > effective_at and earlier_longest_key = longest_key, false)
                                                                    as continues
        from running
        where next_at is distinct from effective_at
    ) i
    where not continues or expires_before_next
)

-- the state entered at an instant
select
    client_id, purpose, channel, partner_code,
    case when granted then 'granted' else 'expired' end             as status,
    effective_at                                                    as valid_from,
    case when expires_before_next then longest_end else next_cut end as valid_to,
    case when granted then longest_grant_id else event_id end       as basis_event_id
from boundaries
where not continues

union all

-- the longest grant ran out before the next instant
select client_id, purpose, channel, partner_code, 'expired', longest_end, next_at, event_id
from boundaries
where expires_before_next

union all

-- a key with a single grant (half the keys) needs no window: granted from its start to its end,
-- then expired; a grant whose end does not follow its start is expired from the start
select
    k.client_id, k.purpose, k.channel, k.partner_code,
    v.status, v.valid_from, v.valid_to, k.event_id
from {{ key_events }} k
cross join lateral (
    values
        (true,
         case when k.ends_at > k.effective_at then 'granted' else 'expired' end,
         k.effective_at,
         case when k.ends_at > k.effective_at and k.ends_at < 'infinity' then k.ends_at end),
        (k.ends_at > k.effective_at and k.ends_at < 'infinity', 'expired', k.ends_at, null)
) as v (starts, status, valid_from, valid_to)
where {{ where }} and k.key_event_count = 1 and v.starts
{% endmacro %}

{#- consent_history's part for one half of the key events (by client): keys with a revocation or
    restriction by the full rules, keys with grants only by the path above, in one table per
    half, so that each half's history starts as soon as its key events are ready and the two
    halves keep both cores busy. dbt var `grants_only_path` (default true): false sends every
    key through the full rules, which the tests use to check that both paths agree. -#}
{% macro consent_history_part(half) %}
{%- set key_events = ref('int_consent_key_events__half_' ~ half) %}
{%- set fast = var('grants_only_path', true) %}
select * from (
{{ consent_history_intervals(key_events, 'k.grants_only is not true' if fast else 'true') }}
) by_full_rules
{%- if fast %}
union all
select * from (
{{ consent_history_grants_only(key_events, 'k.grants_only') }}
) by_grants_only_path
{%- endif %}
{% endmacro %}
