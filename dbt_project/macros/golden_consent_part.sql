{#-
   One part of golden_consent: the current status of the keys of one consent_history half, with
   every grant that holds a granted consent open now (several products can each grant it).
   golden_consent is a view over the halves; each is built as soon as its history half is, so
   the two keep both cores busy. On a grants-only key every running grant supports the status;
   elsewhere only those after the key's latest revocation or restriction so far.
-#}
{% macro golden_consent_part(half) %}
{%- set key_events = ref('int_consent_key_events__half_' ~ half) %}
with current_intervals as (
    select *
    from {{ ref('int_consent_history__half_' ~ half) }}
    where valid_from <= {{ as_of() }} and (valid_to is null or valid_to > {{ as_of() }})
),

supporting_grants as (
    select client_id, purpose, channel, partner_code,
           array_agg(event_id order by effective_at, event_id) as event_ids,
           max(ends_at) as valid_until
    from {{ key_events }}
    where grants_only and effective_at <= {{ as_of() }} and ends_at > {{ as_of() }}
    group by 1, 2, 3, 4
    union all
    select client_id, purpose, channel, partner_code,
           array_agg(event_id order by effective_at, event_id),
           max(ends_at)
    from (
        select
            k.*,
            max(effective_at) filter (
                where action in ('revoke', 'restrict') and effective_at <= {{ as_of() }}
            ) over (partition by client_id, purpose, channel, partner_code) as revoked_at
        from {{ key_events }} k
        where grants_only is not true
    ) key_events
    where action = 'grant' and effective_at <= {{ as_of() }} and ends_at > {{ as_of() }}
      and (revoked_at is null or effective_at > revoked_at)
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
{% endmacro %}

{#-
   One part of golden_consent at the reader's instant t (reader_instant()): the run's rows
   (int_golden_consent__half_<half>, at a = as_of()) for every key whose status cannot have
   moved between a and t, and for the others the consent_history interval that contains t.

   A key's status at t differs from its status at a only if one of its intervals starts in
   (least(a, t), greatest(a, t)] (history intervals follow each other without gaps: a grant
   that runs out is followed by an `expired` interval). Those keys are found by a range scan of
   the history part's valid_from index, so reading at t costs what the clock changed, not the
   table. A granted key read at t lists the grants that hold it open at t, by the rule of
   golden_consent_part (on a key with revocations, only grants after the last revocation or
   restriction so far).
-#}
{% macro golden_consent_at_reader(half) %}
{#- in an incremental derivation, this run's rows of the affected clients and the published
    rows of the others (macros/affected_clients.sql) -#}
{%- set history = with_unaffected(ref('int_consent_history__half_' ~ half)) %}
{%- set key_events = with_unaffected(ref('int_consent_key_events__half_' ~ half)) %}
{%- set key = ['client_id', 'purpose', 'channel', 'partner_code'] %}
{%- set moved_since_run -%}
    m.valid_from > least({{ as_of() }}, {{ reader_instant() }})
    and m.valid_from <= greatest({{ as_of() }}, {{ reader_instant() }})
{%- endset %}
select g.client_id, g.purpose, g.channel, g.partner_code, g.status, g.valid_from,
       g.valid_until, g.basis_event_ids, g.last_changed_at
from {{ with_unaffected(ref('int_golden_consent__half_' ~ half)) }} g
where not exists (
    select 1 from {{ history }} m
    where {% for column in key %}m.{{ column }} = g.{{ column }} and {% endfor %}{{ moved_since_run }}
)
union all
select h.client_id, h.purpose, h.channel, h.partner_code, h.status, h.valid_from,
       case when h.status = 'granted' then nullif(s.valid_until, 'infinity') else h.valid_to end,
       case when h.status = 'granted' and s.event_ids is not null then s.event_ids
            else array[h.basis_event_id] end,
       h.valid_from
from (
    select distinct {% for column in key %}m.{{ column }}{{ ', ' if not loop.last }}{% endfor %}
    from {{ history }} m
    where {{ moved_since_run }}
) moved
join {{ history }} h
    on {% for column in key %}h.{{ column }} = moved.{{ column }} and {% endfor %}h.valid_from <= {{ reader_instant() }}
    and (h.valid_to is null or h.valid_to > {{ reader_instant() }})
left join lateral (
    select array_agg(k.event_id order by k.effective_at, k.event_id) as event_ids,
           max(k.ends_at) as valid_until
    from {{ key_events }} k
    where {% for column in key %}k.{{ column }} = h.{{ column }} and {% endfor %}k.action = 'grant'
      and k.effective_at <= {{ reader_instant() }} and k.ends_at > {{ reader_instant() }}
      and (k.grants_only is true or not exists (
          select 1 from {{ key_events }} r
          where {% for column in key %}r.{{ column }} = k.{{ column }} and {% endfor %}r.action in ('revoke', 'restrict')
            and r.effective_at >= k.effective_at and r.effective_at <= {{ reader_instant() }}
      ))
) s on h.status = 'granted'
{% endmacro %}
