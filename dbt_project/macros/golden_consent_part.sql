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
