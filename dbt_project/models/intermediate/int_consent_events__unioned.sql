-- Every consent fact from every source in one shape, with the purpose/channel/partner its
-- consent type gives it, and whether it counts (DESIGN rules 1 and 4):
--  * a doubtful grant (unknown consent, wording not in force, hash mismatch, or rejected by
--    form validation) is kept here with its reason but does not count;
--  * a doubtful revocation still counts: one naming an unknown consent is honoured as all
--    marketing on all channels; only a CRM flag the catalog does not map (it names no consent
--    at all) has no effect.
-- Built in two parts side by side (macros/consent_events_typed.sql); this view is their union.
{{ config(materialized='view') }}
select * from {{ ref('int_consent_events__unioned_matrix') }}
union all
select * from {{ ref('int_consent_events__unioned_other') }}
