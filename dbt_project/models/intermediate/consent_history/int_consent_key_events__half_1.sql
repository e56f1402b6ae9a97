-- Half 1 of the key events, by client (macros/consent_key_events.sql); written in key and time
-- order, and its one sort (3.3 M rows, 0.4 GB at 1 M clients) gets the memory to stay in memory.
-- A partial index reaches the keys with a revocation or restriction (1 row in 4) without reading
-- the others: the full-rules history and golden parts read only those. Hash joins only: the
-- half's filter on hashtext(client_id) is estimated at 1 row in 200, and on such estimates
-- PostgreSQL once joined 52 k grants to 9 k channel-uniform groups by nested loop (53 s at
-- 20 k clients, 0.4 s by hash).
{{ config(
    materialized='table',
    meta={'derived_by_client': true},
    pre_hook=["{{ large_sort_memory('2GB') }}", "{{ hash_joins_only() }}"],
    post_hook=[
        "create index on {{ this }} (client_id) where grants_only is not true",
        "{{ analyze_for_readers() }}",
    ],
    indexes=[{'columns': ['client_id']}],
) }}
{{ consent_key_events(1) }}
