-- CRM consent ticks, one row per raw row (every CRM batch); renamed and cast.
-- A view over raw that only parses: stg_crm__consent_flags stages its rows once per batch, and
-- depersonalisation re-stages erased rows through it.
-- flag_value = false records a refusal / revocation of that consent at set_at.
with src as (
    select * from {{ source('raw', 'crm_consent_flags') }}
)

select
    {{ empty_to_null('src.crm_client_id') }}  as crm_client_id,
    {{ empty_to_null('src.contract_id') }}    as contract_id,
    {{ empty_to_null('src.flag_code') }}      as flag_code,
    {{ to_boolean('src.value') }}             as flag_value,
    {{ to_moscow_timestamptz('src.set_at') }} as set_at,
    {{ empty_to_null('src.set_by') }}         as set_by,
    {{ empty_to_null('src.scan_url') }}       as scan_url,
    src._batch_id                             as batch_id,
    src._file_name                            as file_name,
    src._line_number                          as line_number
from src
