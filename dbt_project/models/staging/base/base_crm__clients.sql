-- CRM client cards, one row per raw row (every CRM batch); renamed, cast and normalised.
-- A view over raw that only parses: stg_crm__clients stages its rows once per batch, and
-- depersonalisation re-stages erased rows through it.
with src as (
    select * from {{ source('raw', 'crm_clients') }}
),

phones as (
    select phone_key, phone_e164 from {{ source('raw', 'phone_numbers') }} where is_valid
)

select
    'crm'::text                                   as source,
    {{ empty_to_null('src.crm_client_id') }}      as source_record_id,
    {{ empty_to_null('src.crm_client_id') }}      as crm_client_id,
    {{ empty_to_null('src.last_name') }}          as last_name,
    {{ normalise_name('src.last_name') }}         as last_name_norm,
    {{ empty_to_null('src.first_name') }}         as first_name,
    {{ normalise_name('src.first_name') }}        as first_name_norm,
    {{ empty_to_null('src.middle_name') }}        as middle_name,
    {{ normalise_name('src.middle_name') }}       as middle_name_norm,
    {{ to_date('src.birth_date') }}               as birth_date,
    {{ empty_to_null('src.phone') }}              as phone,
    phones.phone_e164,
    {{ normalise_email('src.email') }}            as email,
    {{ empty_to_null('src.passport') }}           as passport,
    {{ digits_only('src.passport') }}             as passport_digits,
    {{ empty_to_null('src.address') }}            as address,
    {{ to_moscow_timestamptz('src.updated_at') }} as updated_at,
    src._batch_id                                 as batch_id,
    src._file_name                                as file_name,
    src._line_number                              as line_number
from src
left join phones on phones.phone_key = {{ phone_key('src.phone') }}
