-- Web events' consent elements, typed once per batch (macros/staged_batches.sql): base_web__event_consents
-- parses the raw rows, this table keeps them. Every reader of web staging reads it.
{{ config(
    materialized='incremental',
    on_schema_change='fail',
    indexes=[{'columns': ['batch_id', 'file_name', 'line_number']}],
    pre_hook=["{{ unstage_batches('web', 'base_web__event_consents') }}"],
    post_hook=["analyze {{ this }}"],
) }}

select
    b.*,
    i.finished_at as batch_loaded_at,
    {{ parser_fingerprint('base_web__event_consents') }} as parsed_by
from {{ ref('base_web__event_consents') }} b
join {{ source('quality', 'ingest_batches') }} i
    on i.source = 'web' and i.batch_id = b.batch_id
{% if is_incremental() %}
where b.batch_id in {{ batches_to_stage('web', 'base_web__event_consents') }}
{% endif %}
