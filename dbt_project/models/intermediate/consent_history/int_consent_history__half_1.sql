-- consent_history of the clients in half 1 of the key events (macros/consent_history_intervals.sql:
-- consent_history_part): keys with a revocation or restriction by the full rules, keys with
-- grants only by the cheaper path. Each half is built as soon as its key events are, side by
-- side with the other half.
{{ config(
    materialized='table',
    meta={'derived_by_client': true},
    pre_hook=["{{ large_sort_memory() }}", "{{ read_in_key_order() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[{'columns': ['client_id']}, {'columns': ['valid_from']}],
) }}
{{ consent_history_part(half=1) }}
