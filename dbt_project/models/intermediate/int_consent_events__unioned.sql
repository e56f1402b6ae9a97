-- Every consent fact from every source in one shape, with the purpose/channel/partner its
-- consent type gives it, and whether it counts (DESIGN rules 1 and 4):
--  * a doubtful grant (unknown consent, wording not in force, hash mismatch, or rejected by
--    form validation) is kept here with its reason but does not count;
--  * a doubtful revocation still counts: one naming an unknown consent is honoured as all
--    marketing on all channels; only a CRM flag the catalog does not map (it names no consent
--    at all) has no effect.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
) }}
with unioned as (
    {% for model in ['matrix', 'crm_flags', 'web'] %}
    select event_id, source, source_record_id, consent_code, null::text as purpose,
           null::text as channel, action, effective_at, valid_until, wording_version,
           contract_number, process, evidence_url, evidence_level, doubt_reason, detail,
           batch_id, file_name, line_number, row_id
    from {{ ref('int_consent_events__' ~ model) }}
    union all
    {% endfor %}
    select event_id, source, source_record_id, consent_code, purpose, channel, action,
           effective_at, valid_until, wording_version, contract_number, process, evidence_url,
           evidence_level, doubt_reason, detail, batch_id, file_name, line_number, row_id
    from {{ ref('int_consent_events__helpdesk') }}
    union all
    select event_id, source, source_record_id, consent_code, purpose, channel, action,
           effective_at, valid_until, wording_version, contract_number, process, evidence_url,
           evidence_level, doubt_reason, detail, batch_id, file_name, line_number, row_id
    from {{ ref('int_consent_events__partner') }}
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
)

select
    event_id,
    source,
    source_record_id,
    consent_code,
    case
        when action = 'restrict' and source = 'partner' then null  -- every purpose
        when action = 'revoke' and not known_type and resolved_purpose is null then 'marketing'
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
            then concat_ws('; ', doubt_reason, 'flagged by validation (' || failed_validation
                || '), honoured')
        else doubt_reason
    end                                                    as doubt_reason,
    detail,
    batch_id,
    file_name,
    line_number
from typed
