-- Every consent fact after normalisation, one row each, attached to its golden client
-- (DESIGN section 6). Doubtful facts stay visible with `is_counted = false` and a reason.
-- Built in two parts side by side (macros/consent_event_part.sql): the facts derived from
-- contracts through the product matrix, and those given or refused directly (CRM ticks, web,
-- helpdesk, partner); this view is their union. An event lives in exactly one part, and each
-- part has a unique index on event_id and one on client_id.
{{ config(materialized='view') }}
select * from {{ with_unaffected(ref('int_consent_event__contracts')) }} as contracts
union all
select * from {{ with_unaffected(ref('int_consent_event__direct')) }} as direct
