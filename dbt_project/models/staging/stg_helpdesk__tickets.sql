-- Helpdesk tickets, typed once per batch (macros/staged_batches.sql): base_helpdesk__tickets
-- parses the raw rows, this table keeps them. Every reader of helpdesk staging reads it.
{{ config(
    materialized='incremental',
    on_schema_change='fail',
    indexes=[
        {'columns': ['batch_id', 'file_name', 'line_number']},
        {'columns': ['source_record_id']},
    ],
    pre_hook=["{{ unstage_batches('helpdesk', 'base_helpdesk__tickets') }}"],
    post_hook=["analyze {{ this }}"],
) }}

select
    b.*,
    i.finished_at as batch_loaded_at,
    {{ parser_fingerprint('base_helpdesk__tickets') }} as parsed_by
from {{ ref('base_helpdesk__tickets') }} b
join {{ source('quality', 'ingest_batches') }} i
    on i.source = 'helpdesk' and i.batch_id = b.batch_id
{% if is_incremental() %}
where b.batch_id in {{ batches_to_stage('helpdesk', 'base_helpdesk__tickets') }}
{% endif %}
