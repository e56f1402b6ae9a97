-- CRM ticks through the flag map: true grants the flag's consent from set_at for the consent
-- type's term (if a wording of it was in force then); false revokes it from set_at.
-- A tick re-exported in a later batch is the same fact: duplicates collapse to one event.
with ticks as (
    select distinct on (crm_client_id, coalesce(contract_id, ''), flag_code, flag_value, set_at)
        *, {{ moscow_date('set_at') }} as set_day
    from {{ affected_only(ref('stg_crm__consent_flags'), 'crm', 'crm_client_id') }} as f
    order by crm_client_id, coalesce(contract_id, ''), flag_code, flag_value, set_at,
             batch_id, line_number
),

contracts as (
    select contract_id, contract_number from {{ ref('int_crm__contracts') }}
)

select
    'crm:tick:' || left(md5(concat_ws('|', k.crm_client_id, k.contract_id, k.flag_code,
        k.flag_value::text, {{ ts_id('k.set_at') }})), 20)                  as event_id,
    'crm'::text                                                    as source,
    k.crm_client_id                                                as source_record_id,
    fm.consent_code,
    case when k.flag_value then 'grant' else 'revoke' end          as action,
    k.set_at                                                       as effective_at,
    case when k.flag_value then {{ add_months_moscow('k.set_at', 't.term_months') }} end
                                                                   as valid_until,
    case when k.flag_value then w.wording_version end             as wording_version,
    c.contract_number,
    case when k.contract_id is not null then 'contract' else 'crm_flag' end as process,
    k.scan_url                                                     as evidence_url,
    case when k.scan_url is not null then 'signed_scan' else 'operator_entry' end
                                                                   as evidence_level,
    case
        -- a flag the catalog does not map names no consent: it neither grants nor revokes
        when fm.consent_code is null then 'unknown_flag_code'
        when t.consent_code is null then 'unknown_consent_code'
        when k.flag_value and w.wording_version is null then 'wording_not_in_force'
    end                                                            as doubt_reason,
    'CRM tick ' || k.flag_code || ' = ' || k.flag_value::text      as detail,
    k.batch_id,
    k.file_name,
    k.line_number,
    k.crm_client_id || ':' || k.flag_code                          as row_id
from ticks k
left join {{ ref('int_catalog__crm_flag_map') }} fm on fm.flag_code = k.flag_code
left join {{ ref('int_catalog__consent_types') }} t on t.consent_code = fm.consent_code
left join contracts c on c.contract_id = k.contract_id
-- the wording in force on the tick's day: a hash join on the consent and a range check over
-- int_catalog__wording_periods, not a lookup per tick (1.3 M at 1 M clients)
left join {{ ref('int_catalog__wording_periods') }} w
    on w.consent_code = fm.consent_code and k.set_day >= w.from_day
    and (w.to_day is null or k.set_day <= w.to_day)
