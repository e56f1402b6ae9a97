-- Every consent fact after normalisation, one row each, attached to its golden client
-- (DESIGN section 6). Doubtful facts stay visible with `is_counted = false` and a reason.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    indexes=[
        {'columns': ['event_id'], 'unique': True},
        {'columns': ['client_id']},
    ],
) }}
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
