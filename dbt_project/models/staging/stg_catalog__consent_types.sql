-- Catalog consent types of every catalog batch; is_current_snapshot marks the batch in force.
with src as (
    select * from {{ source('raw', 'catalog_consent_types') }}
)

select
    {{ empty_to_null('src.consent_code') }}          as consent_code,
    {{ empty_to_null('src.purpose') }}               as purpose,
    {{ empty_to_null('src.channel') }}               as channel,
    {{ empty_to_null('src.partner_code') }}          as partner_code,
    {{ to_integer('src.term_months') }}              as term_months,
    {{ empty_to_null('src.description') }}           as description,
    src._batch_id = {{ current_catalog_batch_id() }} as is_current_snapshot,
    src._batch_id                                    as batch_id,
    src._file_name                                   as file_name,
    src._line_number                                 as line_number
from src
