-- Conflicts for DPOs and lawyers to review (DESIGN section 8), one row per conflict: its type, the
-- golden client, the source records involved ('source:source_record_id', the keys of
-- client_xref), the consent events involved (consent_event.event_id) and a plain-words detail.
-- `conflict_id` is deterministic (md5 of the type and what identifies the conflict), so a
-- conflict keeps its id from run to run while it lasts. Every type, as the DPO reads it:
--
--  * tick_after_revocation - a source still shows a consent that the client has since revoked.
--    For every source record that carries a state of a consent (a CRM tick, per contract or at
--    client level; a web account's consent; a partner record's consent), its latest state (the
--    newest fact by effective time; a revocation wins a tie) is still "granted", counted or not,
--    although a counted revocation or restriction of the same client (helpdesk letter or
--    request, CRM refusal, web withdrawal, partner refusal; also one honoured for a possible
--    identity match) covering that consent was received at or after the tick was set. Covering:
--    same purpose; same channel, or either side's channel is `any`; the revocation has no partner
--    or the same partner. The tick's record and every such revocation's record are named; the
--    row's time is the first such revocation (when the source went stale). A tick whose own
--    term had already ended is still reported (the source still shows it; the detail says so),
--    and so is one the client later re-granted through another source (that grant re-opens the
--    consent, not the stale tick). The consent tables already honour the revocation; the row
--    tells the DPO which source system still shows the tick and must be corrected.
--  * contract_missing_consents - a contract without the consents its product requires. Either
--    (a) a matrix rule in force at signing matches the contract but its consent was not granted
--    (the rule names an unknown consent type, a wording version not in force at signing, or the
--    grant failed validation), and no other counted grant of that consent cites the same
--    contract (e.g. a signed CRM tick on it); one row per contract, listing the missing consents;
--    or (b) no matrix rule in force at signing matches the contract at all (or it has no signing
--    time): the product grants nothing, not even processing, which means the matrix misses the
--    product (or the product's rules had lapsed at signing) or the CRM codes are wrong. Both are
--    fail-safe already (nothing is granted); the row asks the lawyers to fix the catalog or the
--    contract.
--  * wording_mismatch - a consent whose wording does not match the catalog: a grant from a CRM
--    tick, the website or a partner that is not counted because its wording version is missing
--    or unknown, was not in force at the signing instant, or its text hash differs from the
--    catalog's. (Matrix grants with a lapsed wording are contract_missing_consents.)
--  * unconfirmed_sole_basis - a consent currently granted (golden_consent) whose every
--    supporting grant is a web consent without confirmation (evidence_level
--    unconfirmed_online: no e-mail link, SMS code or ESIA): anyone could have filled in the
--    form, so the company may contact on that basis but cannot prove who agreed. One row per
--    client, purpose, partner and set of basis events (the channels are in the detail).
--  * shared_document - one document (the same non-empty URL of a contract scan, a CRM tick's
--    scan, a helpdesk letter scan or a partner's evidence, on any staged row, counted or not) is
--    attached to the records of two or more different golden clients: a paper signed by one
--    person filed under another. One row per document and client, naming that client's records
--    carrying it, then (up to twelve) records of the other clients. Web form logs are left out:
--    the website writes one per form submission, so each belongs to one account by construction.
--  * ambiguous_identity - record pairs splink scored between the review thresholds, shown
--    instead of being silently merged or split (revocations already cross such pairs).
{{ config(materialized='table', pre_hook=["{{ large_sort_memory() }}", "{{ hash_joins_only() }}"]) }}
-- consent_event is read once into a narrow working set (everything but the bulk of counted matrix
-- grants); staging views are read for cheap columns only, and timestamps (a regular expression
-- per row) are parsed only for the few rows that turn out to matter.
with events as materialized (
    select event_id, client_id, consent_code, purpose, channel, partner_code, action,
           effective_at, valid_until, wording_version, contract_number, source, source_record_id,
           process, evidence_level, is_counted, doubt_reason, detail
    from {{ ref('consent_event') }}
    where process <> 'matrix' or not is_counted
),

revocations as (
    select event_id, client_id, purpose, channel, partner_code, effective_at,
           source || ':' || source_record_id as source_record
    from events
    where is_counted and client_id is not null and purpose is not null
      and effective_at is not null
      and (action = 'revoke' or (action = 'restrict' and source <> 'partner'))
),

-- ------------------------------------------------------------------ tick_after_revocation
source_states as (
    -- the latest state each source record shows for a consent (clients with a revocation only)
    select distinct on (client_id, source, source_record_id, coalesce(contract_number, ''),
                        consent_code)
        event_id, client_id, consent_code, purpose, channel, partner_code, action, effective_at,
        valid_until, is_counted, source, source_record_id, contract_number, process
    from events
    where process in ('crm_flag', 'contract', 'web_form', 'partner_feed')
      and action in ('grant', 'revoke') and consent_code is not null and purpose is not null
      and effective_at is not null
      and coalesce(doubt_reason, '') <> 'possible_match_revocation_honoured'
      and client_id in (select client_id from revocations)
    order by client_id, source, source_record_id, coalesce(contract_number, ''), consent_code,
             effective_at desc, (action = 'revoke') desc, event_id
),

stale_ticks as (
    select
        t.event_id, t.client_id, t.consent_code, t.effective_at, t.valid_until, t.is_counted,
        t.source, t.source_record_id, t.contract_number, t.process,
        array_agg(r.event_id order by r.effective_at, r.event_id)      as revocation_ids,
        array_agg(distinct r.source_record)                            as revocation_records,
        min(r.effective_at)                                            as first_revoked_at
    from source_states t
    join revocations r
        on r.client_id = t.client_id and r.purpose = t.purpose
        and (r.channel = t.channel or r.channel in ('any', 'all') or t.channel in ('any', 'all'))
        and (r.partner_code = '' or r.partner_code = t.partner_code)
        and r.effective_at >= t.effective_at
    where t.action = 'grant'
    group by t.event_id, t.client_id, t.consent_code, t.effective_at, t.valid_until,
             t.is_counted, t.source, t.source_record_id, t.contract_number, t.process
),

-- ------------------------------------------------------------------ contract_missing_consents
rules as (
    select * from {{ ref('int_catalog__product_matrix') }}
),

missing_grants as (
    -- matrix grants of a contract that did not count, unless the consent came from that
    -- contract some other way (a counted grant citing the same contract)
    select m.event_id, m.client_id, m.consent_code, m.effective_at, m.detail, m.doubt_reason,
           m.source_record_id, m.contract_number
    from events m
    where m.process = 'matrix' and m.action = 'grant' and not m.is_counted
      and not exists (
          select 1 from {{ ref('consent_event') }} g
          where g.client_id = m.client_id and g.is_counted and g.action = 'grant'
            and g.contract_number = m.contract_number and g.consent_code = m.consent_code
      )
),

contracts_missing as (
    select
        client_id, source_record_id, contract_number,
        min(effective_at)                                              as signed_at,
        array_agg(event_id order by consent_code, event_id)            as event_ids,
        string_agg(coalesce(consent_code, '?') || ' (' || coalesce(detail, 'matrix') || ': '
                   || coalesce(doubt_reason, 'not counted') || ')', '; '
                   order by consent_code, event_id)                    as missing
    from missing_grants
    group by client_id, source_record_id, contract_number
),

underived_contract_ids as (
    -- contracts from which the matrix derivation made no event at all (cheap columns only)
    select k.contract_id
    from {{ ref('int_crm__contracts') }} k
    where not exists (
        select 1 from {{ ref('consent_event') }} d
        where d.process = 'matrix' and d.source_record_id = k.crm_client_id
          and d.contract_number = k.contract_number
    )
),

underived_contracts as (
    -- their newest version, as the matrix derivation reads a contract
    select c.contract_id, c.crm_client_id, c.contract_number, c.system_code, c.product_type,
           c.signed_at
    from {{ ref('int_crm__contracts') }} c
    where c.contract_id = any(array(select contract_id from underived_contract_ids))
),

contracts_without_rule as (
    -- ... that no rule of the matrix in force at signing matches
    select u.*,
        exists (
            select 1 from rules r
            where (r.match_kind = 'system_code' and r.match_value = u.system_code)
               or (r.match_kind = 'product_type' and r.match_value = u.product_type)
               or (r.match_kind = 'contract_mask' and u.contract_number like r.match_value)
        ) as product_in_matrix
    from underived_contracts u
    where not exists (
        select 1 from rules r
        where {{ in_force_at('r', 'u.signed_at') }}
          and ((r.match_kind = 'system_code' and r.match_value = u.system_code)
               or (r.match_kind = 'product_type' and r.match_value = u.product_type)
               or (r.match_kind = 'contract_mask' and u.contract_number like r.match_value))
    )
),

-- ------------------------------------------------------------------ unconfirmed_sole_basis
unconfirmed_grants as (
    select event_id, source, source_record_id, consent_code, effective_at
    from events
    where source = 'web' and action = 'grant' and is_counted
      and evidence_level = 'unconfirmed_online'
),

granted_on_web as (
    -- every supporting grant must be a web consent, so the first one starts with 'web:'
    select client_id, purpose, channel, partner_code, basis_event_ids
    from {{ ref('golden_consent_at_run') }}
    where status = 'granted' and basis_event_ids[1] like 'web:%'
),

sole_unconfirmed as (
    -- golden rows (one per concrete channel) whose every basis event is an unconfirmed web grant
    select g.client_id, g.purpose, g.channel, g.partner_code, g.basis_event_ids,
           array_agg(distinct u.source || ':' || u.source_record_id)   as records,
           string_agg(distinct u.consent_code, ', ')                   as consent_codes,
           min(u.effective_at)                                         as granted_at
    from granted_on_web g
    cross join lateral unnest(g.basis_event_ids) as b(event_id)
    left join unconfirmed_grants u on u.event_id = b.event_id
    group by g.client_id, g.purpose, g.channel, g.partner_code, g.basis_event_ids
    having bool_and(u.event_id is not null)
),

sole_unconfirmed_keys as (
    -- one conflict per client, purpose, partner and basis (a consent for `any` is six rows)
    select client_id, purpose, partner_code, basis_event_ids, records, consent_codes, granted_at,
           string_agg(channel, ', ' order by channel)                  as channels
    from sole_unconfirmed
    group by client_id, purpose, partner_code, basis_event_ids, records, consent_codes,
             granted_at
),

-- ------------------------------------------------------------------ shared_document
document_records as (
    -- every (document, source record) pair: scans of contracts and ticks, letters, partner
    -- evidence (web form logs are one per web event, hence per account, and are left out)
    select distinct url, source, source_record_id
    from (
        select scan_url as url, 'crm' as source, crm_client_id as source_record_id
        from {{ ref('stg_crm__contracts') }} where scan_url is not null
        union all
        select scan_url, 'crm', crm_client_id
        from {{ ref('stg_crm__consent_flags') }} where scan_url is not null
        union all
        select letter_scan_url, 'helpdesk', ticket_id
        from {{ ref('stg_helpdesk__tickets') }} where letter_scan_url is not null
        union all
        select evidence_url, 'partner', source_record_id
        from {{ ref('stg_partner__clients') }} where evidence_url is not null
    ) as d
    where source_record_id is not null
),

document_clients as (
    -- documents on more than one source record (the only ones that can be on two clients)
    select d.url, x.client_id, d.source || ':' || d.source_record_id as source_record
    from document_records d
    join (select url from document_records group by url having count(*) > 1) as m using (url)
    join {{ source('identity', 'client_xref') }} x
        on x.source = d.source and x.source_record_id = d.source_record_id
),

shared_documents as (
    select url,
           count(distinct client_id)                                   as clients,
           count(*)                                                    as records,
           (array_agg(client_id || ' ' || source_record order by client_id, source_record))[1:12]
                                                                       as first_records
    from document_clients
    group by url
    having min(client_id) <> max(client_id)
),

document_times as (
    -- when each record got the document (timestamps parsed for those documents' rows only)
    select url, source_record, min(attached_at) as attached_at
    from (
        select scan_url as url, 'crm:' || crm_client_id as source_record, signed_at as attached_at
        from {{ ref('stg_crm__contracts') }}
        where scan_url = any(array(select url from shared_documents))
        union all
        select scan_url, 'crm:' || crm_client_id, set_at
        from {{ ref('stg_crm__consent_flags') }}
        where scan_url = any(array(select url from shared_documents))
        union all
        select letter_scan_url, 'helpdesk:' || ticket_id, received_at
        from {{ ref('stg_helpdesk__tickets') }}
        where letter_scan_url = any(array(select url from shared_documents))
        union all
        select evidence_url, 'partner:' || source_record_id, obtained_at
        from {{ ref('stg_partner__clients') }}
        where evidence_url = any(array(select url from shared_documents))
    ) as t
    group by url, source_record
),

shared_per_client as (
    -- one row per document and client: its own records, then (up to 12) of the other clients'
    select s.url, s.clients, s.records as record_count, c.client_id,
           array_agg(c.source_record order by c.source_record)         as records,
           min(t.attached_at)                                          as attached_at,
           array(select f from unnest(s.first_records) as f
                 where split_part(f, ' ', 1) <> c.client_id)           as others
    from shared_documents s
    join document_clients c using (url)
    left join document_times t on t.url = c.url and t.source_record = c.source_record
    group by s.url, s.clients, s.records, s.first_records, c.client_id
),

-- ------------------------------------------------------------------ ambiguous_identity
ambiguous_pairs as (
    select distinct on (least(a.source_l || ':' || a.source_record_id_l,
                              a.source_r || ':' || a.source_record_id_r),
                        greatest(a.source_l || ':' || a.source_record_id_l,
                                 a.source_r || ':' || a.source_record_id_r))
        a.*,
        least(a.source_l || ':' || a.source_record_id_l,
              a.source_r || ':' || a.source_record_id_r) || '|'
            || greatest(a.source_l || ':' || a.source_record_id_l,
                        a.source_r || ':' || a.source_record_id_r) as pair_key
    from {{ source('identity', 'identity_ambiguous_matches') }} a
    order by least(a.source_l || ':' || a.source_record_id_l,
                   a.source_r || ':' || a.source_record_id_r),
             greatest(a.source_l || ':' || a.source_record_id_l,
                      a.source_r || ':' || a.source_record_id_r),
             a.match_probability desc
),

conflicts as (
    select
        'tick_after_revocation'::text                                  as conflict_type,
        t.client_id || '|' || t.event_id                               as conflict_key,
        t.client_id,
        array[t.source || ':' || t.source_record_id]
            || array(select r from unnest(t.revocation_records) as r
                     where r <> t.source || ':' || t.source_record_id order by r)
                                                                       as source_records,
        array[t.event_id] || t.revocation_ids                          as event_ids,
        case t.process
            when 'web_form' then 'web account ' || t.source_record_id
            when 'partner_feed' then 'partner record ' || t.source_record_id
            else 'CRM ' || t.source_record_id
                || coalesce(' contract ' || t.contract_number, ' (client-level tick)')
        end || ' still shows ' || coalesce(t.consent_code, '?') || ' granted ('
            || t.event_id || ', set ' || to_char(t.effective_at at time zone 'Europe/Moscow',
                                                 'YYYY-MM-DD HH24:MI')
            || case when not t.is_counted then ', not counted' else '' end
            || case when t.valid_until <= t.first_revoked_at
                    then ', its term ended ' || to_char(t.valid_until at time zone 'Europe/Moscow',
                                                        'YYYY-MM-DD')
                    else '' end
            || ') after the client revoked it on '
            || to_char(t.first_revoked_at at time zone 'Europe/Moscow', 'YYYY-MM-DD HH24:MI')
            || ' (' || array_to_string(t.revocation_ids, ', ')
            || '); correct the source system'                          as detail,
        t.first_revoked_at                                             as occurred_at
    from stale_ticks t

    union all

    select
        'contract_missing_consents'::text,
        'crm:' || coalesce(m.source_record_id, '') || '|' || coalesce(m.contract_number, ''),
        m.client_id,
        array['crm:' || m.source_record_id],
        m.event_ids,
        'contract ' || coalesce(m.contract_number, '?') || ': the product requires '
            || m.missing || ', but the contract grants none of them',
        m.signed_at
    from contracts_missing m

    union all

    select
        'contract_missing_consents'::text,
        'crm:' || coalesce(c.crm_client_id, '') || '|' || coalesce(c.contract_number, '') || '|'
            || coalesce(c.contract_id, ''),
        x.client_id,
        array['crm:' || c.crm_client_id],
        array[]::text[],
        'contract ' || coalesce(c.contract_number, c.contract_id, '?') || ' ('
            || coalesce(c.system_code, '-') || ' / ' || coalesce(c.product_type, '-') || '): '
            || case
                   when c.signed_at is null then 'no signing time, so no consent can be derived'
                   when c.product_in_matrix
                       then 'no rule of the product matrix for this product was in force at '
                            || 'signing, so the contract grants no consent'
                   else 'the product matrix has no rule for this product, so the contract '
                        || 'grants no consent'
               end,
        c.signed_at
    from contracts_without_rule c
    left join {{ source('identity', 'client_xref') }} x
        on x.source = 'crm' and x.source_record_id = c.crm_client_id

    union all

    select
        'wording_mismatch'::text,
        e.event_id,
        e.client_id,
        array[e.source || ':' || e.source_record_id],
        array[e.event_id],
        e.event_id || ': ' || e.doubt_reason || ' (' || coalesce(e.consent_code, '-') || ' v'
            || coalesce(e.wording_version, '?') || '); the grant is not counted',
        e.effective_at
    from events e
    where not e.is_counted and e.action = 'grant' and e.process <> 'matrix'
      and e.doubt_reason ~ 'wording'

    union all

    select
        'unconfirmed_sole_basis'::text,
        s.client_id || '|' || s.purpose || '|' || s.partner_code || '|'
            || array_to_string(s.basis_event_ids, ','),
        s.client_id,
        s.records,
        s.basis_event_ids,
        s.purpose || coalesce(' (partner ' || nullif(s.partner_code, '') || ')', '') || ' on '
            || s.channels || ' is granted only by unconfirmed web consent ' || s.consent_codes
            || ' (' || array_to_string(s.basis_event_ids, ', ')
            || '): no e-mail link, SMS code or ESIA proves who agreed',
        s.granted_at
    from sole_unconfirmed_keys s

    union all

    select
        'shared_document'::text,
        p.url || '|' || p.client_id,
        p.client_id,
        p.records || array(select substr(f, strpos(f, ' ') + 1) from unnest(p.others) as f),
        null::text[],
        'document ' || p.url || ' is attached to ' || p.clients || ' different clients: '
            || array_to_string(p.records, ', ') || ' of this client; also '
            || array_to_string(array(
                   select substr(f, strpos(f, ' ') + 1) || ' (' || split_part(f, ' ', 1) || ')'
                   from unnest(p.others) as f), ', ')
            || case when p.record_count > 12 then ' and more' else '' end,
        p.attached_at
    from shared_per_client p

    union all

    select
        'ambiguous_identity'::text,
        a.pair_key,
        coalesce(a.client_id_l, a.client_id_r),
        array[a.source_l || ':' || a.source_record_id_l,
              a.source_r || ':' || a.source_record_id_r],
        null::text[],
        'pair scored ' || coalesce(round(a.match_probability::numeric, 3)::text, '?')
            || case when a.same_client then ' but joined through other links; review'
                    else ' kept apart (clients ' || coalesce(a.client_id_l, '?') || ', '
                         || coalesce(a.client_id_r, '?') || '); review' end,
        null::timestamptz
    from ambiguous_pairs a
)

select
    md5(conflict_type || '|' || conflict_key)                          as conflict_id,
    conflict_type,
    client_id,
    source_records,
    event_ids,
    detail,
    occurred_at
from conflicts
