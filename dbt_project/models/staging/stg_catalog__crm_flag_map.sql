-- CRM flag code -> consent code of every catalog batch; is_current_snapshot marks the batch in force.
with src as (
    select * from {{ source('raw', 'catalog_crm_flag_map') }}
)

select
    {{ empty_to_null('src.flag_code') }}             as flag_code,
    {{ empty_to_null('src.consent_code') }}          as consent_code,
    src._batch_id = {{ current_catalog_batch_id() }} as is_current_snapshot,
    src._batch_id                                    as batch_id,
    src._file_name                                   as file_name,
    src._line_number                                 as line_number
from src
