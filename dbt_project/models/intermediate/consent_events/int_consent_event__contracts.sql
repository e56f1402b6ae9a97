-- consent_event's facts derived from contracts through the product matrix (over half of all
-- facts), attached to their clients (macros/consent_event_part.sql); built side by side with
-- int_consent_event__direct.
{{ config(
    materialized='table',
    meta={'derived_by_client': true},
    pre_hook=["{{ large_sort_memory() }}", "{{ one_core_per_model() }}",
              "{{ hash_joins_only() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
    indexes=[
        {'columns': ['event_id'], 'unique': True},
        {'columns': ['client_id']},
    ],
) }}
{{ consent_event_part(['matrix']) }}
