-- Counted consent events applied to the keys they govern: client x purpose x concrete channel x
-- partner (the rules and the method are in macros/consent_key_events.sql). Written in key
-- order, so that each consent_history bucket walks it key by key through the key index.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    indexes=[{'columns': ['client_id', 'purpose', 'channel', 'partner_code']}],
) }}
{{ consent_key_events(ref('consent_event')) }}
