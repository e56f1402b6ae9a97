-- Every revocation, restriction and erase request with its legal deadline: 10 working days on
-- the Russian production calendar after the day it was received (152-ФЗ), when it became
-- effective in the golden tables, and its state (DESIGN section 8).
--
-- A request becomes effective when the batch carrying it has been loaded and derived: the
-- batch's arrival (its ISO batch id, the day it landed) or, for other batch ids, its load time.
-- consent_history applies a revocation from the instant it was received, so once effective the
-- client is blocked retroactively; the report shows whether that happened within the deadline.
{{ config(materialized='table') }}
with requests as (
    select
        case when source = 'helpdesk' then source_record_id else min(event_id) end as request_id,
        source,
        source_record_id,
        client_id,
        min(detail)                                   as request,
        effective_at                                  as received_at,
        min(batch_id)                                 as batch_id,
        min(loaded_at)                                as loaded_at
    from {{ ref('consent_event') }}
    where action in ('revoke', 'restrict') and source <> 'partner' and is_counted
      -- a revocation also honoured for a possible identity match is the same request
      and doubt_reason is distinct from 'possible_match_revocation_honoured'
    group by source, source_record_id, client_id, effective_at
),

dated as (
    select
        r.*,
        case when r.batch_id ~ '^\d{4}-\d{2}-\d{2}'
             then greatest(left(r.batch_id, 10)::date::timestamp at time zone 'Europe/Moscow',
                           r.received_at)
             else r.loaded_at end                     as effective_in_golden_at,
        received_day.working_day_seq                  as received_seq
    from requests r
    left join {{ source('reference', 'production_calendar') }} received_day
        on received_day.day = {{ moscow_date('r.received_at') }}
),

deadlines as (
    select
        d.*,
        -- the 10th working day after the day of receipt, until the end of that day
        deadline_day.day                              as deadline_day,
        ((deadline_day.day + 1)::timestamp at time zone 'Europe/Moscow') as deadline_at
    from dated d
    left join {{ source('reference', 'production_calendar') }} deadline_day
        on deadline_day.working_day_seq = d.received_seq + 10 and deadline_day.is_working_day
)

select
    request_id,
    client_id,
    source,
    source_record_id,
    request,
    received_at,
    deadline_day,
    deadline_at,
    effective_in_golden_at,
    case
        when client_id is null and {{ as_of() }} > deadline_at then 'late'
        when client_id is null then 'open'
        when effective_in_golden_at <= deadline_at then 'on_time'
        else 'late'
    end                                               as state
from deadlines
