-- The current status per client x purpose x channel x partner (DESIGN section 6), at the
-- reader's instant: `consent.now` when the session sets it, else now() (on an installation
-- whose runs pin the clock with CONSENT_NOW, the run's instant; macros/as_of.sql:
-- reader_instant). Right at every moment, not only at the last run: a consent that ends after
-- the run reads `expired` from its end, with no run in between.
-- Read, not recomputed: golden_consent_at_run holds every key's status at the run's instant;
-- only the keys whose history has an interval starting between that instant and the reader's
-- (a range scan of the history's valid_from index: the few that a clock changed) are read from
-- consent_history at the reader's instant instead (macros/golden_consent_part.sql).
{{ config(materialized='view') }}
-- a stored row under channel `any` stands for the six channel keys of a channel-uniform
-- group (macros/consent_scope.sql)
select
    h.client_id,
    h.purpose,
    c.channel,
    h.partner_code,
    h.status,
    h.valid_from,
    h.valid_until,
    h.basis_event_ids,
    h.last_changed_at
from (
    {{ golden_consent_at_reader(half=0) }}
    union all
    {{ golden_consent_at_reader(half=1) }}
) h
join {{ key_channels('c') }} on c.key_channel = h.channel
