-- One client bucket of golden_consent (see macros/golden_consent_rows.sql), from the same
-- bucket's history and key events, built side by side with the other bucket.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}", "{{ read_in_key_order() }}"],
    indexes=[
        {'columns': ['client_id', 'purpose', 'channel', 'partner_code'], 'unique': True},
        {'columns': ['purpose', 'channel', 'status']},
    ],
) }}
{{ golden_consent_rows(ref('int_consent_history__part_0'), ref('int_consent_key_events__part_0')) }}
