-- One client bucket of consent_history (see macros/consent_history_intervals.sql); built side by
-- side with the other bucket. dbt var `history_buckets` (1 or 2, default 2): with 1, part 0
-- holds everything and part 1 nothing.
{{ config(
    materialized='table',
    pre_hook=["{{ large_sort_memory() }}", "{{ read_in_key_order() }}"],
    indexes=[{'columns': ['client_id', 'purpose', 'channel', 'partner_code', 'valid_from']}],
) }}
{%- set buckets = var('history_buckets', 2) | int %}
{%- if buckets not in [1, 2] %}{{ exceptions.raise_compiler_error('history_buckets must be 1 or 2') }}{% endif %}
{%- if 0 < buckets %}
{{ consent_history_intervals(ref('int_consent_key_events'), 0, buckets) }}
{%- else %}
select null::text as client_id, null::text as purpose, null::text as channel,
       null::text as partner_code, null::text as status, null::timestamptz as valid_from,
       null::timestamptz as valid_to, null::text as basis_event_id
where false
{%- endif %}
