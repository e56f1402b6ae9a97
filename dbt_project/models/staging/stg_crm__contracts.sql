-- CRM contracts, typed once per batch: base_crm__contracts parses the raw rows, this table keeps them
-- (macros/staged_batches.sql). Every reader of crm staging reads this table.
{{ config(
    materialized='incremental',
    on_schema_change='fail',
    indexes=[{'columns': ['batch_id', 'file_name', 'line_number']}],
    pre_hook=["{{ unstage_batches('crm') }}"],
    post_hook=["analyze {{ this }}"],
) }}

select b.*, i.finished_at as batch_loaded_at
from {{ ref('base_crm__contracts') }} b
join {{ source('quality', 'ingest_batches') }} i
    on i.source = 'crm' and i.batch_id = b.batch_id
{% if is_incremental() %}
where b.batch_id in {{ batches_to_stage('crm') }}
{% endif %}
