-- Website consents and withdrawals. A grant counts only with a known wording version in force
-- on the event date whose text hash, when sent, matches the catalog's (DESIGN rule 1).
with events as (
    -- the newest copy of each event (a later batch may repeat it)
    select distinct on (event_id)
        event_id, account_id, occurred_at, event_type, form_id, confirmation, evidence_url,
        batch_id, line_number
    from {{ affected_only(ref('stg_web__events'), 'web', 'account_id') }} as w
    order by event_id, batch_id desc, line_number desc
)

select
    'web:' || c.event_id || '#' || c.consent_index::text           as event_id,
    'web'::text                                                    as source,
    e.account_id                                                   as source_record_id,
    c.consent_code,
    case when c.granted then 'grant' else 'revoke' end             as action,
    e.occurred_at                                                  as effective_at,
    case when c.granted then {{ add_months_moscow('e.occurred_at', 't.term_months') }} end
                                                                   as valid_until,
    c.wording_version,
    null::text                                                     as contract_number,
    'web_form'::text                                               as process,
    e.evidence_url,
    case when e.confirmation in ('sms_code', 'email_link', 'esia')
         then 'confirmed_' || e.confirmation else 'unconfirmed_online' end as evidence_level,
    case
        when t.consent_code is null then 'unknown_consent_code'
        when not c.granted then null
        when c.wording_version is null then 'wording_version_missing'
        when w.wording_version is null then 'unknown_wording_version'
        when not {{ in_force_at('w', 'e.occurred_at') }} then 'wording_not_in_force'
        when c.wording_sha256 is not null and c.wording_sha256 <> lower(w.text_sha256)
            then 'wording_hash_mismatch'
    end                                                            as doubt_reason,
    'web ' || e.event_type || ' (' || coalesce(e.form_id, 'no form') || ')' as detail,
    c.batch_id,
    c.file_name,
    c.line_number,
    c.event_id || '#' || c.consent_index::text                     as row_id
from {{ ref('stg_web__event_consents') }} c
join events e
    on e.event_id = c.event_id and e.batch_id = c.batch_id and e.line_number = c.line_number
left join {{ ref('int_catalog__consent_types') }} t on t.consent_code = c.consent_code
left join {{ ref('int_catalog__wordings') }} w
    on w.consent_code = c.consent_code and w.wording_version = c.wording_version
