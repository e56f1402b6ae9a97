{#-
    The catalog batch in force: the newest catalog batch_id present in any catalog raw table
    (each catalog batch is a full snapshot; looking at all four tables keeps a snapshot whose
    one file happens to be empty from making an older batch look current).

    A catalog preview (`consent-center catalog-preview`) loads a candidate catalog as batch
    `preview-<name>` and builds the consent models into *_preview schemas with the dbt var
    `catalog_batch_id` pointing at it; ordinary runs never see preview batches.

    The var comes from outside the project (a folder name, a command line), so it is never
    spliced into SQL as it is: it must be a batch id (or `preview-` and a batch id), letters,
    digits and `._:+-` only, and anything else stops the build with a compiler error. Only a
    value that matched is quoted, and it cannot contain a quote or a backslash.
-#}
{% macro current_catalog_batch_id() -%}
    {%- if var('catalog_batch_id', none) -%}
        {{ catalog_batch_literal(var('catalog_batch_id')) }}::text
    {%- else -%}
    (
        select max(catalog_batches.batch_id)
        from (
            {% for table in ['catalog_consent_types', 'catalog_wordings', 'catalog_product_matrix', 'catalog_crm_flag_map'] -%}
            select max(_batch_id) as batch_id from {{ source('raw', table) }}
            where _batch_id not like 'preview-%'
            {% if not loop.last %}union all{% endif %}
            {% endfor -%}
        ) as catalog_batches
    )
    {%- endif -%}
{%- endmacro %}

{#- A validated catalog batch id as an SQL string literal (see current_catalog_batch_id). -#}
{% macro catalog_batch_literal(batch_id) -%}
    {%- set pattern = '(preview-)?[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}' -%}
    {%- if batch_id is not string or not modules.re.fullmatch(pattern, batch_id) -%}
        {{ exceptions.raise_compiler_error(
            "var catalog_batch_id is not a batch id: it must match " ~ pattern
            ~ " (letters, digits and ._:+- only)") }}
    {%- endif -%}
    {{ "'" ~ batch_id ~ "'" }}
{%- endmacro %}

{#-
    The wording of a consent in force on a Moscow day (DESIGN rule 1: a rule or tick that names
    no wording version takes the one in force then): the newest of the versions in force, as a
    one-column subquery for a `lateral` join. Null consent or no version in force: no row.
-#}
{% macro wording_in_force(consent_code, day) -%}
    (
        select w.wording_version
        from {{ ref('int_catalog__wordings') }} w
        where w.consent_code = {{ consent_code }} and {{ in_force_on('w', day) }}
        order by w.effective_from desc
        limit 1
    )
{%- endmacro %}
