-- The wording of each consent in force on each Moscow day, as day ranges: from_day .. to_day
-- (inclusive; to_day null = open). The in-force set only changes where a wording starts or the
-- day after one ends, so each range is looked up once with wording_in_force (macros/catalog.sql)
-- at its first day. Millions of ticks then find their wording by a hash join on the consent and
-- a range check, instead of one lookup each. Days with no wording in force have no range.
{{ config(materialized='table') }}
with boundaries as (
    select consent_code, effective_from as day
    from {{ ref('int_catalog__wordings') }}
    union
    select consent_code, effective_to + 1
    from {{ ref('int_catalog__wordings') }}
    where effective_to is not null
),

periods as (
    select consent_code, day as from_day,
           lead(day) over (partition by consent_code order by day) - 1 as to_day
    from boundaries
)

select p.consent_code, p.from_day, p.to_day, w.wording_version
from periods p
cross join lateral {{ wording_in_force('p.consent_code', 'p.from_day') }} w
