-- Every consent wording of every catalog batch; is_current_snapshot marks the batch in force.
with src as (
    select * from {{ source('raw', 'catalog_wordings') }}
)

select
    {{ empty_to_null('src.consent_code') }}          as consent_code,
    {{ empty_to_null('src.wording_version') }}       as wording_version,
    {{ to_date('src.effective_from') }}              as effective_from,
    {{ to_date('src.effective_to') }}                as effective_to,
    src.text                                         as wording_text,
    lower({{ empty_to_null('src.text_sha256') }})    as text_sha256,
    src._batch_id = {{ current_catalog_batch_id() }} as is_current_snapshot,
    src._batch_id                                    as batch_id,
    src._file_name                                   as file_name,
    src._line_number                                 as line_number
from src
