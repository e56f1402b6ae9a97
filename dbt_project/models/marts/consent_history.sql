-- The full status history per client x purpose x channel x partner (DESIGN rules 2-6):
-- non-overlapping intervals, so the status at any instant is one row. Computed in two halves
-- by client, built side by side (int_consent_history__half_0/1): in each, keys with a
-- revocation or restriction by the full rules and keys with grants only by a cheaper path with
-- the same result (macros/consent_history_intervals.sql). This view is their union; a key
-- lives in exactly one half, and lookups by client reach each half's index. The six channel
-- keys of a channel-uniform group share one stored history under channel `any`, shown here on
-- each.
{{ config(
    materialized='view',
    post_hook=["{{ create_consent_status_function() }}"],
) }}
-- a stored row under channel `any` stands for the six channel keys of a channel-uniform
-- group (macros/consent_scope.sql)
{{ halves_on_concrete_channels('int_consent_history', [
    'client_id', 'purpose', 'channel', 'partner_code', 'status', 'valid_from', 'valid_to',
    'basis_event_id'
]) }}
