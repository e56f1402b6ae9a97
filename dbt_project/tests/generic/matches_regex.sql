{#-
    Every non-null value of the column matches the POSIX regular expression `pattern`. Usage:
      data_tests:
        - matches_regex:
            arguments: {pattern: '^\+[0-9]{10,15}$'}
-#}
{% test matches_regex(model, column_name, pattern) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }}::text !~ '{{ pattern | replace("'", "''") }}'
{% endtest %}
