-- Half 0 of the key events, by client (macros/consent_key_events.sql); written in key and time
-- order, and its one sort (8 M rows, over 1 GB at 1 M clients) gets the memory to stay in memory.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory('2GB') }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[{'columns': ['client_id']}],
) }}
{{ consent_key_events(0) }}
