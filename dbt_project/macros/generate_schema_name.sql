{#-
    Use a model's custom schema verbatim (`staging`, `consent`) instead of dbt's default
    `<target schema>_<custom schema>`; models without one go to the target schema.
    The consent models - intermediate and marts, never the shared staging views - may be moved:
    - the var `build_generation` (every pipeline run; pipelines/publication.py) builds them into
      the run's own schemas, `staging__<generation>` and `consent__<generation>`, which the run
      publishes in one transaction once all of them are built;
    - the var `schema_suffix` (catalog previews) into e.g. `consent_preview`.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set suffix = '' -%}
    {%- if node.fqn[1] in ['intermediate', 'marts'] -%}
        {%- set suffix = var('schema_suffix', '') -%}
        {%- set generation = var('build_generation', '') | string | trim -%}
        {%- if generation -%}
            {%- if not modules.re.match('^g[0-9a-f]{8,32}$', generation) -%}
                {{ exceptions.raise_compiler_error("var build_generation " ~ (generation | tojson) ~ " is not a generation name (g and 8-32 hex digits)") }}
            {%- endif -%}
            {%- set suffix = suffix ~ '__' ~ generation -%}
        {%- endif -%}
    {%- endif -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}{{ suffix }}
    {%- else -%}
        {{ custom_schema_name | trim }}{{ suffix }}
    {%- endif -%}
{%- endmacro %}
