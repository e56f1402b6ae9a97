-- Every consent fact after normalisation, one row each, attached to its golden client
-- (DESIGN section 6). Doubtful facts stay visible with `is_counted = false` and a reason.
--
-- Fail safe across identity (rule 4): when splink scored a pair of records between its review
-- thresholds and kept them apart (consent.identity_ambiguous_matches), a revocation or
-- restriction carried by one side is also honoured for the other side's client, as an extra
-- event `<event_id>~<client_id>` with doubt_reason `possible_match_revocation_honoured`; grants
-- never cross such a pair. The pair itself is in report_conflicts (ambiguous_identity).
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[
        {'columns': ['event_id'], 'unique': True},
        {'columns': ['client_id']},
    ],
) }}
with possible_matches as (
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
        b.finished_at                                          as loaded_at,
        e.is_counted,
        'possible_match_revocation_honoured'::text             as doubt_reason,
        coalesce(e.detail, '') || ' (also honoured for a possible identity match, p='
            || round(max(m.match_probability)::numeric, 3) || ')' as detail,
        e.batch_id, e.file_name, e.line_number
    from {{ ref('int_consent_events__unioned') }} e
    join possible_matches m using (source, source_record_id)
    left join {{ source('quality', 'ingest_batches') }} b
        on b.source = e.source and b.batch_id = e.batch_id
    where e.action in ('revoke', 'restrict') and e.is_counted and e.source <> 'partner'
    group by e.event_id, m.other_client_id, e.consent_code, e.purpose, e.channel,
        e.partner_code, e.action, e.effective_at, e.valid_until, e.wording_version,
        e.contract_number, e.source, e.source_record_id, e.process, e.evidence_url,
        e.evidence_level, b.finished_at, e.is_counted, e.detail, e.batch_id, e.file_name,
        e.line_number
)

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
    b.finished_at                                          as loaded_at,
    e.is_counted,
    e.doubt_reason,
    e.detail,
    e.batch_id,
    e.file_name,
    e.line_number
from {{ ref('int_consent_events__unioned') }} e
left join {{ source('identity', 'client_xref') }} x
    on x.source = e.source and x.source_record_id = e.source_record_id
left join {{ source('quality', 'ingest_batches') }} b
    on b.source = e.source and b.batch_id = e.batch_id

union all

select * from honoured_for_possible_matches
