-- Letters and requests: revocations (and restrictions) for their scope, purposes x channels,
-- from the instant received, for the whole client. A scope that cannot be read is honoured as
-- all marketing on all channels and reported (DESIGN rule 4: when in doubt, do not contact).
-- An erase request revokes everything: nobody who asked to be erased is contacted.
{% set purposes = consent_purposes() %}
{% set channels = concrete_channels() %}
with tickets as (
    select distinct on (ticket_id) *
    from {{ ref('stg_helpdesk__tickets') }}
    where request_type in ('revoke_consent', 'restrict_processing', 'erase_data')
    order by ticket_id, batch_id desc, line_number desc
),

parsed as (
    select
        t.*,
        (
            coalesce(cardinality(scope_purposes), 0) = 0
            or coalesce(cardinality(scope_channels), 0) = 0
            or not scope_purposes <@ array[{{ "'" ~ purposes | join("', '") ~ "'" }}, 'all']::text[]
            or not scope_channels <@ array[{{ "'" ~ channels | join("', '") ~ "'" }}, 'all']::text[]
        ) as is_garbled
    from tickets t
),

scoped as (
    select
        p.*,
        case
            when request_type = 'erase_data' or ('all' = any(scope_purposes) and not is_garbled)
                then array[{{ "'" ~ purposes | join("', '") ~ "'" }}]::text[]
            when is_garbled then array['marketing']::text[]
            else scope_purposes
        end as purposes,
        case
            when request_type = 'erase_data' or is_garbled or 'all' = any(scope_channels)
                then array['any']::text[]
            else scope_channels
        end as channels
    from parsed p
)

select
    'helpdesk:' || s.ticket_id || ':' || purpose.value || ':' || channel.value as event_id,
    'helpdesk'::text                                               as source,
    s.ticket_id                                                    as source_record_id,
    null::text                                                     as consent_code,
    purpose.value                                                  as purpose,
    channel.value                                                  as channel,
    case when s.request_type = 'restrict_processing' then 'restrict' else 'revoke' end as action,
    s.received_at                                                  as effective_at,
    null::timestamptz                                              as valid_until,
    null::text                                                     as wording_version,
    s.contract_number,
    'helpdesk_request'::text                                       as process,
    s.letter_scan_url                                              as evidence_url,
    case when s.letter_scan_url is not null then 'letter_scan' else 'request_without_scan' end
                                                                   as evidence_level,
    case when s.is_garbled and s.request_type <> 'erase_data'
         then 'garbled_scope_honoured_as_all_marketing' end        as doubt_reason,
    s.request_type || ' received by the helpdesk'                  as detail,
    s.batch_id,
    s.file_name,
    s.line_number,
    s.ticket_id                                                    as row_id
from scoped s
cross join lateral unnest(s.purposes) as purpose(value)
cross join lateral unnest(s.channels) as channel(value)
