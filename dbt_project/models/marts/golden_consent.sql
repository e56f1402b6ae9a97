-- The current status per client x purpose x channel x partner: the consent_history interval
-- that contains now(), with every event that supports it (DESIGN section 6). Rebuilt on every
-- run (and nightly), so consents that expire by the clock move to `expired` without new data.
-- Built per client bucket (int_golden_consent__part_*, side by side); this view is their union,
-- and a lookup by client reaches each part's unique key index.
{{ config(materialized='view') }}
select * from {{ ref('int_golden_consent__part_0') }}
union all
select * from {{ ref('int_golden_consent__part_1') }}
