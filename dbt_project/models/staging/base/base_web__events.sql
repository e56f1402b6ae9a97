-- Website events, one row per JSON line (every web batch); renamed, cast and normalised.
-- A view over raw that only parses: stg_web__events stages its rows once per batch, and
-- depersonalisation re-stages erased rows through it.
with src as (
    select * from {{ source('raw', 'web_events') }}
),

phones as (
    select phone_key, phone_e164 from {{ source('raw', 'phone_numbers') }} where is_valid
)

select
    'web'::text                                    as source,
    {{ empty_to_null('src.account_id') }}          as source_record_id,
    {{ empty_to_null('src.event_id') }}            as event_id,
    {{ to_moscow_timestamptz('src.occurred_at') }} as occurred_at,
    {{ empty_to_null('src.event_type') }}          as event_type,
    {{ empty_to_null('src.account_id') }}          as account_id,
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
    {{ empty_to_null('src.form_id') }}             as form_id,
    {{ empty_to_null('src.confirmation') }}        as confirmation,
    {{ empty_to_null('src.ip') }}                  as ip,
    {{ empty_to_null('src.evidence_url') }}        as evidence_url,
    src._payload                                   as payload,
    src._batch_id                                  as batch_id,
    src._file_name                                 as file_name,
    src._line_number                               as line_number
from src
left join phones on phones.phone_key = {{ phone_key('src.phone') }}
