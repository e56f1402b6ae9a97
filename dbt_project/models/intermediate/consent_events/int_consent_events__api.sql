-- Revocations received through the consent API (DESIGN section 10): one event per purpose x
-- channel of the scope, from the instant received, for the whole client of the subject record
-- (macros/consent_event_part.sql attaches it through subject_source/subject_record_id). The
-- API has already widened unknown codes to all (fail safe), so the scope is taken as stored.
-- event_id `api:<revocation_id>:<purpose>:<channel>`: the API's overlay stops once the first of
-- them is published (consent.api_revocation.fold_event_id).
with revocations as (
    select r.*
    from {{ ref('stg_api__revocations') }} r
    {%- if affected_schema() %}
    where (r.subject_source, r.subject_record_id) in (
            select source, source_record_id from {{ affected_schema() }}.affected_records)
       or ('api', r.revocation_id) in (
            select source, source_record_id from {{ affected_schema() }}.affected_records)
    {%- endif %}
)

select
    'api:' || r.revocation_id || ':' || purpose.value || ':' || channel.value as event_id,
    'api'::text                                                    as source,
    r.revocation_id                                                as source_record_id,
    r.subject_source,
    r.subject_record_id,
    null::text                                                     as consent_code,
    purpose.value                                                  as purpose,
    channel.value                                                  as channel,
    'revoke'::text                                                 as action,
    r.received_at                                                  as effective_at,
    null::timestamptz                                              as valid_until,
    null::text                                                     as wording_version,
    null::text                                                     as contract_number,
    'api_request'::text                                            as process,
    r.evidence_url,
    case when r.evidence_url is not null then 'api_request_with_evidence'
         else 'api_request' end                                    as evidence_level,
    r.doubt_reason,
    'revocation received through the API (' || r.received_via || ')' as detail,
    null::text                                                     as batch_id,
    null::text                                                     as file_name,
    null::bigint                                                   as line_number,
    r.revocation_id                                                as row_id,
    r.stored_at
from revocations r
cross join lateral unnest(r.purposes) as purpose(value)
cross join lateral unnest(r.channels) as channel(value)
