-- Consents a product grants through the product -> consent matrix (DESIGN rule 1).
-- Every contract, open or closed, is matched against the rules in force at its signing date:
-- by system code, product type, or contract-number mask (SQL LIKE). A contract grants exactly
-- what its matching rules say; nothing else ("a contract is never consent to everything").
with contracts as (
    -- the newest version of each contract (a later export may add closed_at)
    select c.*, {{ moscow_date('c.signed_at') }} as signed_day
    from {{ affected_only(ref('int_crm__contracts'), 'crm', 'crm_client_id') }} c
),

rules as (
    select * from {{ ref('int_catalog__product_matrix') }}
),

wording_on_day as (
    -- the wording of each consent in force on each signing day: looked up once per (consent,
    -- day), some thousands of pairs, instead of once per matched contract (millions)
    select r.consent_code, d.signed_day, w.wording_version
    from (select distinct signed_day from contracts) d
    cross join (select distinct consent_code from rules) r
    cross join lateral {{ wording_in_force('r.consent_code', 'd.signed_day') }} w
),

matches as (
    select c.*, r.rule_id, r.consent_code as rule_consent_code,
           r.wording_version as rule_wording_version, r.term_months as rule_term_months
    from contracts c
    join rules r on r.match_kind = 'system_code' and c.system_code = r.match_value
        and {{ in_force_at('r', 'c.signed_at') }}
    union all
    select c.*, r.rule_id, r.consent_code, r.wording_version, r.term_months
    from contracts c
    join rules r on r.match_kind = 'product_type' and c.product_type = r.match_value
        and {{ in_force_at('r', 'c.signed_at') }}
    union all
    select c.*, r.rule_id, r.consent_code, r.wording_version, r.term_months
    from contracts c
    join rules r on r.match_kind = 'contract_mask' and c.contract_number like r.match_value
        and {{ in_force_at('r', 'c.signed_at') }}
)

select
    'crm:contract:' || m.contract_id || ':' || m.rule_id          as event_id,
    'crm'::text                                                    as source,
    m.crm_client_id                                                as source_record_id,
    m.rule_consent_code                                            as consent_code,
    'grant'::text                                                  as action,
    m.signed_at                                                    as effective_at,
    {{ add_months_moscow('m.signed_at', 'coalesce(m.rule_term_months, t.term_months)') }}
                                                                   as valid_until,
    coalesce(m.rule_wording_version, w_signed.wording_version)     as wording_version,
    m.contract_number,
    'matrix'::text                                                 as process,
    m.scan_url                                                     as evidence_url,
    'derived_from_contract'::text                                  as evidence_level,
    case
        when t.consent_code is null then 'unknown_consent_code'
        when m.rule_wording_version is not null and w_named.wording_version is null
            then 'wording_not_in_force'
        when m.rule_wording_version is null and w_signed.wording_version is null
            then 'wording_not_in_force'
    end                                                            as doubt_reason,
    'rule ' || m.rule_id || ' of the product matrix'               as detail,
    m.batch_id,
    m.file_name,
    m.line_number,
    m.contract_id                                                  as row_id
from matches m
left join {{ ref('int_catalog__consent_types') }} t on t.consent_code = m.rule_consent_code
left join {{ ref('int_catalog__wordings') }} w_named
    on w_named.consent_code = m.rule_consent_code
    and w_named.wording_version = m.rule_wording_version
    and {{ in_force_at('w_named', 'm.signed_at') }}
left join wording_on_day w_signed
    on w_signed.consent_code = m.rule_consent_code and w_signed.signed_day = m.signed_day
