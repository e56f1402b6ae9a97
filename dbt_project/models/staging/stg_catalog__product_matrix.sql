-- Product -> consent matrix rules of every catalog batch; is_current_snapshot marks the batch in force.
with src as (
    select * from {{ source('raw', 'catalog_product_matrix') }}
)

select
    {{ empty_to_null('src.rule_id') }}               as rule_id,
    {{ empty_to_null('src.match_kind') }}            as match_kind,
    {{ empty_to_null('src.match_value') }}           as match_value,
    {{ empty_to_null('src.consent_code') }}          as consent_code,
    {{ empty_to_null('src.wording_version') }}       as wording_version,
    {{ to_integer('src.term_months') }}              as term_months,
    {{ to_date('src.effective_from') }}              as effective_from,
    {{ to_date('src.effective_to') }}                as effective_to,
    src._batch_id = {{ current_catalog_batch_id() }} as is_current_snapshot,
    src._batch_id                                    as batch_id,
    src._file_name                                   as file_name,
    src._line_number                                 as line_number
from src
