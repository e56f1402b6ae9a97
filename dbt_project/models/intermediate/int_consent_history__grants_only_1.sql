-- consent_history of the keys that carry nothing but grants (about 9 keys in 10), half 1 of 2 by
-- client, by the cheaper path of macros/consent_history_intervals.sql; the history parts are
-- built side by side.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}", "{{ read_in_key_order() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[{'columns': ['client_id']}],
) }}
{{ consent_history_part('grants_only', half=1) }}
