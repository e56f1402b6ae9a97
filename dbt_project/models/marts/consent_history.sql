-- The full status history per client x purpose x channel x partner (DESIGN rules 2-6):
-- non-overlapping intervals, so the status at any instant is one row. Computed per client
-- bucket (int_consent_history__part_*, built in parallel; the rules and the method are in
-- macros/consent_history_intervals.sql); this view is their union, and lookups by client reach
-- each part's key index.
{{ config(
    materialized='view',
    post_hook=["{{ create_consent_status_function() }}"],
) }}
select * from {{ ref('int_consent_history__part_0') }}
union all
select * from {{ ref('int_consent_history__part_1') }}
