{#- Heavy set-based models sort millions of timeline rows: give their session room to do it in
    memory instead of spilling to disk (the server default stays modest for everyone else). -#}
{% macro large_sort_memory() -%}
    set work_mem = '{{ env_var("CONSENT_DBT_WORK_MEM", "1GB") }}'
{%- endmacro %}
