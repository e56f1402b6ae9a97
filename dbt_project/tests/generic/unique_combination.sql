{#-
    The combination of `columns` is unique over the model (rows where any of them is null are
    ignored, like `unique`). Usage:
      data_tests:
        - unique_combination:
            arguments: {columns: [batch_id, crm_client_id]}
-#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
where {% for column in columns %}{{ column }} is not null{% if not loop.last %} and {% endif %}{% endfor %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
