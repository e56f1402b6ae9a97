-- CRM ticks, web, helpdesk and partner events in the shape of every consent fact
-- (macros/consent_events_typed.sql).
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    post_hook=["{{ analyze_for_readers() }}"],
) }}
{{ consent_events_typed(['crm_flags', 'web', 'helpdesk', 'partner']) }}
