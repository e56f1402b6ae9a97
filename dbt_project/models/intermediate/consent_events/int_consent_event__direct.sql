-- consent_event's facts given or refused directly: CRM ticks, web consents and withdrawals,
-- helpdesk requests, partner consents and restrictions, revocations received through the API,
-- plus the revocations honoured across possible identity matches
-- (macros/consent_event_part.sql); built side by side with int_consent_event__contracts.
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
{{ consent_event_part(['crm_flags', 'web', 'helpdesk', 'partner', 'api'], honour_possible_matches=true) }}
