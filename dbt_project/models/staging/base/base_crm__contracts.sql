-- CRM contracts, one row per raw row (every CRM batch); renamed and cast.
-- A view over raw that only parses: stg_crm__contracts stages its rows once per batch, and
-- depersonalisation re-stages erased rows through it.
with src as (
    select * from {{ source('raw', 'crm_contracts') }}
)

select
    {{ empty_to_null('src.contract_id') }}       as contract_id,
    {{ empty_to_null('src.crm_client_id') }}     as crm_client_id,
    {{ empty_to_null('src.contract_number') }}   as contract_number,
    {{ empty_to_null('src.system_code') }}       as system_code,
    {{ empty_to_null('src.product_type') }}      as product_type,
    {{ empty_to_null('src.product_name') }}      as product_name,
    {{ to_moscow_timestamptz('src.signed_at') }} as signed_at,
    {{ to_moscow_timestamptz('src.closed_at') }} as closed_at,
    {{ empty_to_null('src.branch_code') }}       as branch_code,
    {{ empty_to_null('src.scan_url') }}          as scan_url,
    src._batch_id                                as batch_id,
    src._file_name                               as file_name,
    src._line_number                             as line_number
from src
