-- consent_history of the keys with a revocation or restriction, by the full rules
-- (macros/consent_history_intervals.sql); built side by side with the grants-only part.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}", "{{ read_in_key_order() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[{'columns': ['client_id']}],
) }}
{{ consent_history_part('with_revocations') }}
