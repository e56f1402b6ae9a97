{#-
    Use a model's custom schema verbatim (`staging`, `consent`) instead of dbt's default
    `<target schema>_<custom schema>`; models without one go to the target schema.
    The var `schema_suffix` (catalog previews) moves the consent models - intermediate and
    marts, never the shared staging views - into e.g. `consent_preview`.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set suffix = var('schema_suffix', '') if node.fqn[1] in ['intermediate', 'marts'] else '' -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}{{ suffix }}
    {%- else -%}
        {{ custom_schema_name | trim }}{{ suffix }}
    {%- endif -%}
{%- endmacro %}
