{#-
    Intervals [valid_from, valid_to) of the same key never overlap (valid_to null = open).
    Fails with the rows whose interval starts before the previous one of its key ends.
-#}
{% test no_overlapping_intervals(model, partition_by, from_column='valid_from', to_column='valid_to') %}
with ordered as (
    select
        {{ partition_by | join(', ') }},
        {{ from_column }} as starts_at,
        lag(coalesce({{ to_column }}, 'infinity'::timestamptz)) over (
            partition by {{ partition_by | join(', ') }} order by {{ from_column }}
        ) as previous_ends_at
    from {{ model }}
)
select * from ordered where previous_ends_at > starts_at
{% endtest %}
