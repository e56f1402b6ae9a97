{#-
   consent_event's parts (DESIGN section 6): every consent fact of some sources in one shape,
   attached to its golden client. consent_event is a view over two parts built side by side:
   int_consent_event__contracts (the matrix derivation, over half the rows) and
   int_consent_event__direct (CRM ticks, web, helpdesk, partner). Each part reads its sources'
   staged views once and is written once; there is no intermediate copy of all facts.

   Every fact gets the purpose/channel/partner its consent type gives it, and whether it counts
   (DESIGN rules 1 and 4):
    * a doubtful grant (unknown consent, wording not in force, hash mismatch, or rejected by form
      validation) is kept with its reason but does not count;
    * a doubtful revocation still counts: one naming an unknown consent is honoured as all
      marketing on all channels; only a CRM flag the catalog does not map (it names no consent
      at all) has no effect.

   Fail safe across identity (rule 4): when splink scored a pair of records between its review
   thresholds and kept them apart (consent.identity_ambiguous_matches), a revocation or
   restriction carried by one side is also honoured for the other side's client, as an extra
   event `<event_id>~<client_id>` with doubt_reason `possible_match_revocation_honoured`, whatever
   its source: a helpdesk letter, a web withdrawal, a CRM refusal, a partner refusal and a
   partner's channel restriction alike; grants never cross such a pair. The pair itself is in
   report_conflicts (ambiguous_identity). Only the direct part carries revocations, so only it
   adds these events.
-#}
{% macro consent_event_part(models, honour_possible_matches=false) %}
{%- set own_scope = ['helpdesk', 'partner', 'api'] %}
{#- the record whose client an event belongs to: its own, but for an API revocation the record
    it names (int_consent_events__api); and when it was loaded: its batch's load, but for an
    API revocation the instant the API stored it -#}
{%- set named_subject = ['api'] %}
with unioned as (
    {%- for model in models %}
    select event_id, source, source_record_id,
           {{ 'subject_source, subject_record_id, stored_at' if model in named_subject
              else 'source as subject_source, source_record_id as subject_record_id, '
                   ~ 'null::timestamptz as stored_at' }},
           consent_code,
           {{ 'purpose' if model in own_scope else 'null::text as purpose' }},
           {{ 'channel' if model in own_scope else 'null::text as channel' }},
           action, effective_at, valid_until, wording_version, contract_number, process,
           evidence_url, evidence_level, doubt_reason, detail, batch_id, file_name, line_number,
           row_id
    from {{ ref('int_consent_events__' ~ model) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

validation as (
    -- form validation's verdicts on individual rows (one per row and rule)
    select source, batch_id, file_name, line_number, record_id,
           string_agg(distinct rule, ', ' order by rule) as rules
    from {{ source('quality', 'dq_rejections') }}
    where stage = 'validate' and severity = 'reject'
    group by 1, 2, 3, 4, 5
),

typed as (
    select
        u.*,
        t.consent_code is not null as known_type,
        coalesce(u.purpose, t.purpose)                     as resolved_purpose,
        coalesce(u.channel, t.channel)                     as resolved_channel,
        coalesce(t.partner_code, '')                       as partner_code,
        v.rules                                            as failed_validation
    from unioned u
    left join {{ ref('int_catalog__consent_types') }} t on t.consent_code = u.consent_code
    left join validation v
        on v.source = u.source and v.batch_id = u.batch_id and v.file_name = u.file_name
        and v.line_number = u.line_number
        and (v.record_id is null or v.record_id = u.row_id or v.record_id = u.source_record_id)
),

events as (
    select
        event_id,
        source,
        source_record_id,
        subject_source,
        subject_record_id,
        stored_at,
        consent_code,
        case
            when action = 'restrict' and source = 'partner' then null  -- every purpose
            when action = 'revoke' and not known_type and resolved_purpose is null
                then 'marketing'
            else resolved_purpose
        end                                                    as purpose,
        case
            when action = 'revoke' and not known_type and resolved_channel is null then 'any'
            else resolved_channel
        end                                                    as channel,
        partner_code,
        action,
        effective_at,
        valid_until,
        wording_version,
        contract_number,
        process,
        evidence_url,
        evidence_level,
        case
            when action = 'grant' then doubt_reason is null and failed_validation is null
            when doubt_reason = 'unknown_flag_code' then false
            else true
        end                                                    as is_counted,
        case
            when action = 'revoke' and doubt_reason = 'unknown_consent_code'
                then 'unknown_consent_code_honoured_as_all_marketing'
            when failed_validation is not null and action = 'grant'
                then coalesce(doubt_reason, 'failed validation: ' || failed_validation)
            when failed_validation is not null
                then concat_ws('; ', doubt_reason, 'flagged by validation ('
                    || failed_validation || '), honoured')
            else doubt_reason
        end                                                    as doubt_reason,
        detail,
        batch_id,
        file_name,
        line_number
    from typed
)
{%- if honour_possible_matches %},

possible_matches as (
    -- record pairs splink kept apart with a doubt: each side may be the other side's client
    select source_l as source, source_record_id_l as source_record_id,
           client_id_r as other_client_id, max(match_probability) as match_probability
    from {{ source('identity', 'identity_ambiguous_matches') }}
    where not same_client and client_id_l <> client_id_r
    group by 1, 2, 3
    union all
    select source_r, source_record_id_r, client_id_l, max(match_probability)
    from {{ source('identity', 'identity_ambiguous_matches') }}
    where not same_client and client_id_l <> client_id_r
    group by 1, 2, 3
),

honoured_for_possible_matches as (
    select
        e.event_id || '~' || m.other_client_id                 as event_id,
        m.other_client_id                                      as client_id,
        e.consent_code, e.purpose, e.channel, e.partner_code, e.action, e.effective_at,
        e.valid_until, e.wording_version, e.contract_number, e.source, e.source_record_id,
        e.process, e.evidence_url, e.evidence_level,
        coalesce(b.finished_at, e.stored_at)                   as loaded_at,
        e.is_counted,
        'possible_match_revocation_honoured'::text             as doubt_reason,
        coalesce(e.detail, '') || ' (also honoured for a possible identity match, p='
            || round(max(m.match_probability)::numeric, 3) || ')' as detail,
        e.batch_id, e.file_name, e.line_number
    from events e
    join possible_matches m
        on m.source = e.subject_source and m.source_record_id = e.subject_record_id
    left join {{ source('quality', 'ingest_batches') }} b
        on b.source = e.source and b.batch_id = e.batch_id
    where e.action in ('revoke', 'restrict') and e.is_counted
      and {{ of_affected_clients('m.other_client_id') }}
    group by e.event_id, m.other_client_id, e.consent_code, e.purpose, e.channel,
        e.partner_code, e.action, e.effective_at, e.valid_until, e.wording_version,
        e.contract_number, e.source, e.source_record_id, e.process, e.evidence_url,
        e.evidence_level, b.finished_at, e.stored_at, e.is_counted, e.detail, e.batch_id,
        e.file_name, e.line_number
)
{%- endif %}

select
    e.event_id,
    x.client_id,
    e.consent_code,
    e.purpose,
    e.channel,
    e.partner_code,
    e.action,
    e.effective_at,
    e.valid_until,
    e.wording_version,
    e.contract_number,
    e.source,
    e.source_record_id,
    e.process,
    e.evidence_url,
    e.evidence_level,
    coalesce(b.finished_at, e.stored_at)                   as loaded_at,
    e.is_counted,
    e.doubt_reason,
    e.detail,
    e.batch_id,
    e.file_name,
    e.line_number
from events e
left join {{ source('identity', 'client_xref') }} x
    on x.source = e.subject_source and x.source_record_id = e.subject_record_id
left join {{ source('quality', 'ingest_batches') }} b
    on b.source = e.source and b.batch_id = e.batch_id
-- a record without a client (not resolved yet) is re-derived by every run that derives
-- incrementally (pipelines/derivation_scope.py puts it among the affected records)
where ({{ of_affected_clients('x.client_id') }} or x.client_id is null)
{%- if honour_possible_matches %}

union all

select * from honoured_for_possible_matches
{%- endif %}
{% endmacro %}
