{#-
    Time arithmetic for consent terms, done in Moscow local time whatever the session zone:
    calendar months are added to the local date-time (a day past the end of the target month
    is clamped to its last day, as PostgreSQL's interval arithmetic does), and catalog dates
    (effective_from .. effective_to, inclusive) are compared with the Moscow date of an instant.
-#}
{% macro moscow_date(ts) -%}
    (({{ ts }}) at time zone 'Europe/Moscow')::date
{%- endmacro %}

{% macro add_months_moscow(ts, months) -%}
    ((({{ ts }}) at time zone 'Europe/Moscow') + make_interval(months => ({{ months }})::int))
        at time zone 'Europe/Moscow'
{%- endmacro %}

{#- Is a catalog row (effective_from .. effective_to, inclusive dates) in force at instant ts? -#}
{% macro in_force_at(row, ts) -%}
    {{ in_force_on(row, moscow_date(ts)) }}
{%- endmacro %}

{#- The same on a Moscow date. Looking the wording up by day rather than by instant lets
    PostgreSQL cache the answer for the few thousand distinct days instead of repeating it for
    millions of contracts and ticks. -#}
{% macro in_force_on(row, day) -%}
    ({{ row }}.effective_from <= {{ day }}
     and ({{ row }}.effective_to is null or {{ row }}.effective_to >= {{ day }}))
{%- endmacro %}

{#- A fixed-width text form of an instant (20 characters) that sorts like the instant itself,
    infinity last; `sortable_ts(ts) || id` keeps an id next to its instant inside max(). -#}
{% macro sortable_ts(ts) -%}
    case when ({{ ts }}) = 'infinity'::timestamptz then '99999999999999999999'
         else to_char(({{ ts }}) at time zone 'UTC', 'YYYYMMDDHH24MISSUS') end
{%- endmacro %}

{#- An instant as it appears inside identifiers: UTC, compact, independent of the session zone. -#}
{% macro ts_id(ts) -%}
    to_char(({{ ts }}) at time zone 'UTC', 'YYYYMMDD"T"HH24MISS"Z"')
{%- endmacro %}
