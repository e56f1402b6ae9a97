-- One client bucket of consent_history (see macros/consent_history_intervals.sql); built side by
-- side with the other bucket (dbt var `history_buckets`).
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}", "{{ read_in_key_order() }}"],
    indexes=[{'columns': ['client_id', 'purpose', 'channel', 'partner_code', 'valid_from']}],
) }}
{{ consent_history_part(0) }}
