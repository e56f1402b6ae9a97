{#-
   Counted consent events applied to the keys they govern: client x purpose x concrete channel x
   partner. Channel `any` is every channel; a revocation without a partner applies to its
   purpose/channel for every partner; a partner restriction applies to every purpose on its
   channel. consent_history and golden_consent read this, never consent_event directly.

   At scale (6.6 M rows for 1 M clients) this half's counted events are read from consent_event
   once, into a narrow working set; the set of existing keys, which revocations and restrictions
   need, is built only for the clients that have one. `grants_only` marks the keys that carry
   nothing but grants (about 9 in 10): their history is a union of validity intervals, which
   consent_history computes by a much cheaper path, with no window at all for a key with a
   single event (`key_event_count`). Each half is written in key and time order, so that the
   history and golden models walk it client by client through its client_id index as a
   sequential read, sorting only each client's few rows.

   Built in two halves by client (a hash of client_id), side by side, so that both cores sort;
   a key, and all of a client's keys, live in exactly one half.

   Channel-uniform keys are kept whole: when every event of a client x purpose x partner is a
   grant on channel `any` and no revocation or restriction of the client can reach that purpose,
   the six channel keys carry the same events and so have the same history. They are written
   once, under channel `any`, and the public consent_history and golden_consent views expand
   them to the six channels (macros/consent_scope.sql). At 1 M clients this is 7 in 10 of the key
   events: 6.6 M rows to sort and window instead of 16 M.
-#}
{% macro consent_key_events(half) %}
{% set purposes = consent_purposes() %}
{% set channels = concrete_channels() %}
{% set each_channel %}
    cross join lateral unnest(
        case when e.channel in ('any', 'all')
             then array[{{ "'" ~ channels | join("', '") ~ "'" }}]::text[]
             else array[e.channel] end
    ) as ch(value)
{% endset %}
with counted as materialized (
    -- this half's counted events, narrow: consent_event (wide, 5.7 M rows at 1 M clients) is
    -- read once, and the branches below read this
    select e.client_id, e.purpose, e.channel, e.partner_code, e.event_id, e.action, e.source,
           e.effective_at, e.valid_until
    from (
        select * from {{ ref('int_consent_event__contracts') }}
        union all
        select * from {{ ref('int_consent_event__direct') }}
    ) e
    where e.is_counted and e.client_id is not null and e.effective_at is not null
      and (hashtext(e.client_id) & 1) = {{ half }}
),

touched as (
    -- client x purpose pairs that a revocation or restriction may reach (no purpose: every
    -- purpose; a partner restriction names none)
    select distinct client_id, purpose
    from counted
    where action <> 'grant'
),

uniform_groups as materialized (
    -- client x purpose x partner whose events are all grants on channel `any`, and which nothing
    -- but grants can reach: one history serves its six channel keys
    select g.client_id, g.purpose, g.partner_code
    from (
        select client_id, purpose, partner_code
        from counted
        where purpose is not null
        group by 1, 2, 3
        having bool_and(action = 'grant' and channel in ('any', 'all'))
    ) g
    where not exists (
              select from touched t where t.client_id = g.client_id and t.purpose = g.purpose)
      and g.client_id not in (select client_id from touched where purpose is null)
),

grants as materialized (
    -- counted grants, each marked when its group is channel-uniform
    select e.*, u.client_id is not null as uniform
    from counted e
    left join uniform_groups u using (client_id, purpose, partner_code)
    where e.action = 'grant' and e.purpose is not null
),

revocations as (
    select e.client_id, e.purpose, ch.value as channel, e.partner_code, e.event_id,
           e.effective_at, e.action
    from counted e
    {{ each_channel }}
    where e.action = 'revoke' or (e.action = 'restrict' and e.source <> 'partner')
),

restrictions as (
    select e.client_id, ch.value as channel, e.event_id, e.effective_at,
           coalesce(e.valid_until, 'infinity'::timestamptz) as ends_at
    from counted e
    {{ each_channel }}
    where e.action = 'restrict' and e.source = 'partner'
),

affected_clients as (
    select client_id from revocations
    union
    select client_id from restrictions
),

keys as (
    -- every key of the clients with a revocation or restriction: their grants' keys (but
    -- those of channel-uniform groups, which no revocation reaches), their revocations' keys,
    -- and every purpose on a restricted channel
    select e.client_id, e.purpose, ch.value as channel, e.partner_code
    from grants e
    {{ each_channel }}
    where not e.uniform and e.client_id in (select client_id from affected_clients)
    union
    select client_id, purpose, channel, partner_code from revocations
    union
    select r.client_id, p.value, r.channel, ''
    from restrictions r
    cross join unnest(array[{{ "'" ~ purposes | join("', '") ~ "'" }}]::text[]) as p(value)
)

select
    key_events.*,
    -- over the whole key; ordered like the table so that one sort serves both
    bool_and(action = 'grant') over whole_key              as grants_only,
    count(*) over whole_key                                as key_event_count
from (
    -- grants define their own keys; a channel-uniform group's grants stay under `any`
    select e.client_id, e.purpose, ch.value as channel, e.partner_code, e.event_id,
           'grant'::text as action, e.effective_at,
           coalesce(e.valid_until, 'infinity'::timestamptz) as ends_at
    from grants e
    {{ each_channel }}
    where not e.uniform
    union all
    select e.client_id, e.purpose, 'any', e.partner_code, e.event_id, 'grant', e.effective_at,
           coalesce(e.valid_until, 'infinity'::timestamptz)
    from grants e
    where e.uniform
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
) key_events
window whole_key as (
    partition by client_id, purpose, channel, partner_code
    order by effective_at, event_id
    rows between unbounded preceding and unbounded following
)
order by client_id, purpose, channel, partner_code, effective_at, event_id
{% endmacro %}
