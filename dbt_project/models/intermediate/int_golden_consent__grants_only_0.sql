-- golden_consent of the grants-only keys of half 0 (macros/golden_consent_part.sql).
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[
        {'columns': ['client_id', 'purpose', 'channel', 'partner_code'], 'unique': True},
    ],
) }}
{{ golden_consent_part('grants_only', half=0) }}
