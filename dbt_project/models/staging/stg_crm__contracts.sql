-- CRM contracts, typed once per batch (macros/staged_batches.sql): base_crm__contracts
-- parses the raw rows, this table keeps them. Every reader of crm staging reads it.
{{ config(
    materialized='incremental',
    on_schema_change='fail',
    indexes=[{'columns': ['batch_id', 'file_name', 'line_number']}],
    pre_hook=["{{ unstage_batches('crm', 'base_crm__contracts') }}"],
    post_hook=["analyze {{ this }}"],
) }}

select
    b.*,
    i.finished_at as batch_loaded_at,
    {{ parser_fingerprint('base_crm__contracts') }} as parsed_by
from {{ ref('base_crm__contracts') }} b
join {{ source('quality', 'ingest_batches') }} i
    on i.source = 'crm' and i.batch_id = b.batch_id
{% if is_incremental() %}
where b.batch_id in {{ batches_to_stage('crm', 'base_crm__contracts') }}
{% endif %}
