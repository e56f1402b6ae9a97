-- The status per client x purpose x channel x partner at the run's instant, the dbt var `as_of`
-- (CONSENT_NOW, else the real now when the run started; macros/as_of.sql): the consent_history
-- interval that contains it, with every event that supports it (DESIGN section 6). What the
-- run's reports count and what the change feed compares from one run to the next;
-- golden_consent shows the same at the reader's instant.
-- Built in two halves by client, one per consent_history half (int_golden_consent__half_0/1,
-- each as soon as its history half is ready; macros/golden_consent_part.sql); this view is their
-- union. A key lives in exactly one half, and each half has a unique index on the key (no index
-- on purpose, channel and status: with 30 combinations a scan of one reads nearly every page
-- anyway).
{{ config(materialized='view') }}
-- a stored row under channel `any` stands for the six channel keys of a channel-uniform
-- group (macros/consent_scope.sql)
{{ halves_on_concrete_channels('int_golden_consent', [
    'client_id', 'purpose', 'channel', 'partner_code', 'status', 'valid_from', 'valid_until',
    'basis_event_ids', 'last_changed_at'
]) }}
