-- golden_consent of the clients in half 0 (macros/golden_consent_part.sql), built as soon as
-- their history is.
{{ config(
    materialized='table',
    meta={'derived_by_client': true},
    pre_hook=["{{ large_sort_memory() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[
        {'columns': ['client_id', 'purpose', 'channel', 'partner_code'], 'unique': True},
    ],
) }}
{{ golden_consent_part(half=0) }}
