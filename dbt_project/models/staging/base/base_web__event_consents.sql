-- One row per element of a web event's consents array (every web batch); renamed and cast.
-- A view over raw that only parses: stg_web__event_consents stages its rows once per batch, and
-- depersonalisation re-stages erased rows through it.
with src as (
    select * from {{ source('raw', 'web_event_consents') }}
)

select
    {{ empty_to_null('src.event_id') }}              as event_id,
    {{ to_integer('src.consent_index') }}            as consent_index,
    {{ empty_to_null('src.consent_code') }}          as consent_code,
    {{ to_boolean('src.granted') }}                  as granted,
    {{ empty_to_null('src.wording_version') }}       as wording_version,
    lower({{ empty_to_null('src.wording_sha256') }}) as wording_sha256,
    src._batch_id                                    as batch_id,
    src._file_name                                   as file_name,
    src._line_number                                 as line_number
from src
