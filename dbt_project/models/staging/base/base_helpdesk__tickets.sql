-- Helpdesk tickets, one row per raw row (every helpdesk batch); renamed, cast and normalised.
-- A view over raw that only parses: stg_helpdesk__tickets stages its rows once per batch, and
-- depersonalisation re-stages erased rows through it.
-- The scope columns come twice: *_raw exactly as written (a garbled scope must stay visible to
-- validation, and is still honoured as a revocation) and as text[] of lower-case codes.
with src as (
    select * from {{ source('raw', 'helpdesk_tickets') }}
),

phones as (
    select phone_key, phone_e164 from {{ source('raw', 'phone_numbers') }} where is_valid
)

select
    'helpdesk'::text                               as source,
    {{ empty_to_null('src.ticket_id') }}           as source_record_id,
    {{ empty_to_null('src.ticket_id') }}           as ticket_id,
    {{ to_moscow_timestamptz('src.received_at') }} as received_at,
    {{ empty_to_null('src.request_type') }}        as request_type,
    {{ empty_to_null('src.fio') }}                 as fio,
    {{ normalise_name('src.fio') }}                as fio_norm,
    {{ to_date('src.birth_date') }}                as birth_date,
    {{ empty_to_null('src.phone') }}               as phone,
    phones.phone_e164,
    {{ normalise_email('src.email') }}             as email,
    {{ empty_to_null('src.passport') }}            as passport,
    {{ digits_only('src.passport') }}              as passport_digits,
    {{ empty_to_null('src.contract_number') }}     as contract_number,
    nullif(src.scope_purposes, '')                 as scope_purposes_raw,
    {{ split_codes('src.scope_purposes') }}        as scope_purposes,
    nullif(src.scope_channels, '')                 as scope_channels_raw,
    {{ split_codes('src.scope_channels') }}        as scope_channels,
    {{ empty_to_null('src.letter_scan_url') }}     as letter_scan_url,
    {{ to_moscow_timestamptz('src.closed_at') }}   as closed_at,
    src._batch_id                                  as batch_id,
    src._file_name                                 as file_name,
    src._line_number                               as line_number
from src
left join phones on phones.phone_key = {{ phone_key('src.phone') }}
