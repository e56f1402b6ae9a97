-- Conflicts for DPOs and lawyers to review (DESIGN section 8), one row per conflict, naming the
-- client, the source records involved and the conflict type. This first cut covers:
--  * ambiguous_identity: record pairs splink scored between the review thresholds, shown
--    instead of being silently merged or split;
--  * wording_mismatch: grants that did not count because their wording was
--    unknown, not in force at signing, or its text hash did not match the catalog.
-- The remaining types of section 8 (a tick after a revocation, a contract without the consents
-- its product requires, one scan attached to two clients, an unconfirmed web consent as sole
-- basis) belong to the reports issue.
{{ config(materialized='table') }}
select
    'ambiguous_identity'::text                                       as conflict_type,
    coalesce(a.client_id_l, a.client_id_r)                           as client_id,
    array[a.source_l || ':' || a.source_record_id_l,
          a.source_r || ':' || a.source_record_id_r]                 as source_records,
    case when a.same_client
         then 'pair scored ' || round(a.match_probability::numeric, 3)
              || ' but joined through other links; review'
         else 'pair scored ' || round(a.match_probability::numeric, 3)
              || ' kept apart (clients ' || a.client_id_l || ', ' || a.client_id_r || '); review'
    end                                                              as detail,
    null::timestamptz                                                as occurred_at
from {{ source('identity', 'identity_ambiguous_matches') }} a

union all

select
    'wording_mismatch'::text,
    e.client_id,
    array[e.source || ':' || e.source_record_id],
    e.event_id || ': ' || e.doubt_reason || ' (' || coalesce(e.consent_code, '-') || ' v'
        || coalesce(e.wording_version, '?') || '); the grant is not counted',
    e.effective_at
from {{ ref('consent_event') }} e
where not e.is_counted and e.action = 'grant'
  and e.doubt_reason ~ '^(wording_|unknown_wording_version)'
