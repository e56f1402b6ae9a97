-- Counted consent events applied to the keys they govern: client x purpose x concrete channel x
-- partner (the rules and the method are in macros/consent_key_events.sql). Built per client
-- bucket (int_consent_key_events__part_*, side by side); this view is their union.
{{ config(materialized='view') }}
select * from {{ ref('int_consent_key_events__part_0') }}
union all
select * from {{ ref('int_consent_key_events__part_1') }}
