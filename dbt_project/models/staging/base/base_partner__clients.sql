-- Partner feed rows (every partner batch); renamed, cast and normalised.
-- A view over raw that only parses: stg_partner__clients stages its rows once per batch, and
-- depersonalisation re-stages erased rows through it.
-- restricted_channels comes twice: *_raw as written and as text[] of lower-case codes.
with src as (
    select * from {{ source('raw', 'partner_clients') }}
),

phones as (
    select phone_key, phone_e164 from {{ source('raw', 'phone_numbers') }} where is_valid
)

select
    'partner'::text                                as source,
    {{ empty_to_null('src.partner_code') }} || ':'
        || {{ empty_to_null('src.partner_client_id') }} as source_record_id,
    {{ empty_to_null('src.partner_code') }}        as partner_code,
    {{ empty_to_null('src.partner_client_id') }}   as partner_client_id,
    {{ empty_to_null('src.last_name') }}           as last_name,
    {{ normalise_name('src.last_name') }}          as last_name_norm,
    {{ empty_to_null('src.first_name') }}          as first_name,
    {{ normalise_name('src.first_name') }}         as first_name_norm,
    {{ empty_to_null('src.middle_name') }}         as middle_name,
    {{ normalise_name('src.middle_name') }}        as middle_name_norm,
    {{ to_date('src.birth_date') }}                as birth_date,
    {{ empty_to_null('src.phone') }}               as phone,
    phones.phone_e164,
    {{ normalise_email('src.email') }}             as email,
    {{ empty_to_null('src.consent_code') }}        as consent_code,
    {{ to_boolean('src.granted') }}                as granted,
    {{ to_moscow_timestamptz('src.obtained_at') }} as obtained_at,
    {{ to_moscow_timestamptz('src.valid_until') }} as valid_until,
    nullif(src.restricted_channels, '')            as restricted_channels_raw,
    {{ split_codes('src.restricted_channels') }}   as restricted_channels,
    {{ empty_to_null('src.agreement_id') }}        as agreement_id,
    {{ empty_to_null('src.evidence_url') }}        as evidence_url,
    src._batch_id                                  as batch_id,
    src._file_name                                 as file_name,
    src._line_number                               as line_number
from src
left join phones on phones.phone_key = {{ phone_key('src.phone') }}
