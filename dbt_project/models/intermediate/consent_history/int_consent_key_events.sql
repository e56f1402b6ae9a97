-- Counted consent events applied to the keys they govern: client x purpose x concrete channel x
-- partner, with `grants_only` marking the keys that carry nothing but grants
-- (macros/consent_key_events.sql). Built in two halves by client side by side; this view is
-- their union, for the models and answers that read every key.
{{ config(materialized='view') }}
select * from {{ with_unaffected(ref('int_consent_key_events__half_0')) }} as half_0
union all
select * from {{ with_unaffected(ref('int_consent_key_events__half_1')) }} as half_1
