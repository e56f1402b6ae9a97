-- Partner feeds: the consent the partner collected (granted from obtained_at until valid_until,
-- else for the type's term; a refusal revokes), and the partner's channel restrictions, which
-- block those channels for the client over the same interval whatever other grants say.
{% set purposes = consent_purposes() %}
with partner as (
    select distinct on (partner_code, partner_client_id, consent_code, obtained_at) p.*,
        t.consent_code is not null as known_type,
        coalesce(p.valid_until, {{ add_months_moscow('p.obtained_at', 't.term_months') }})
            as ends_at,
        w.wording_version
    from {{ affected_only(ref('stg_partner__clients'), 'partner', 'source_record_id') }} p
    left join {{ ref('int_catalog__consent_types') }} t on t.consent_code = p.consent_code
    left join lateral {{ wording_in_force('p.consent_code', moscow_date('p.obtained_at')) }} w
        on true
    order by partner_code, partner_client_id, consent_code, obtained_at, batch_id desc,
             line_number desc
),

consents as (
    select
        'partner:' || partner_code || ':' || partner_client_id || ':' || consent_code || ':'
            || coalesce({{ ts_id('obtained_at') }}, '')                     as event_id,
        source_record_id,
        consent_code,
        null::text                                                 as purpose,
        null::text                                                 as channel,
        case when granted then 'grant' else 'revoke' end           as action,
        obtained_at                                                as effective_at,
        case when granted then ends_at end                         as valid_until,
        wording_version,
        case
            when not known_type then 'unknown_consent_code'
            when granted and wording_version is null then 'wording_not_in_force'
        end                                                        as doubt_reason,
        'partner ' || partner_code || ' agreement ' || coalesce(agreement_id, '-') as detail,
        evidence_url, batch_id, file_name, line_number, partner_code
    from partner
    where consent_code is not null and granted is not null and obtained_at is not null
),

restrictions as (
    select
        'partner:' || p.partner_code || ':' || p.partner_client_id || ':restrict:'
            || channel.value || ':' || coalesce({{ ts_id('p.obtained_at') }}, '') as event_id,
        p.source_record_id,
        null::text                                                 as consent_code,
        null::text                                                 as purpose,
        channel.value                                              as channel,
        'restrict'::text                                           as action,
        p.obtained_at                                              as effective_at,
        p.ends_at                                                  as valid_until,
        null::text                                                 as wording_version,
        null::text                                                 as doubt_reason,
        'partner ' || p.partner_code || ' restricts ' || channel.value as detail,
        p.evidence_url, p.batch_id, p.file_name, p.line_number, p.partner_code
    from partner p
    cross join lateral unnest(p.restricted_channels) as channel(value)
    where p.obtained_at is not null and channel.value <> ''
)

select
    event_id, 'partner'::text as source, source_record_id, consent_code, purpose, channel,
    action, effective_at, valid_until, wording_version, null::text as contract_number,
    'partner_feed'::text as process, evidence_url, 'partner_asserted'::text as evidence_level,
    doubt_reason, detail, batch_id, file_name, line_number,
    source_record_id as row_id
from (select * from consents union all select * from restrictions) as e
