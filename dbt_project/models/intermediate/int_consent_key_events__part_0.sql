-- One client bucket of the key events (see macros/consent_key_events.sql), built side by side
-- with the other; its consent_history part reads only this bucket. dbt var `history_buckets`
-- (1 or 2, default 2): with 1, part 0 holds everything and part 1 nothing.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}"],
    indexes=[{'columns': ['client_id', 'purpose', 'channel', 'partner_code']}],
) }}
{%- set buckets = var('history_buckets', 2) | int %}
{%- if buckets not in [1, 2] %}{{ exceptions.raise_compiler_error('history_buckets must be 1 or 2') }}{% endif %}
{%- if 0 < buckets %}
{{ consent_key_events(ref('consent_event'), 0, buckets) }}
{%- else %}
select null::text as client_id, null::text as purpose, null::text as channel,
       null::text as partner_code, null::text as event_id, null::text as action,
       null::timestamptz as effective_at, null::timestamptz as ends_at
where false
{%- endif %}
