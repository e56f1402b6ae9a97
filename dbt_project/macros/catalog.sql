{#-
    The catalog batch in force: the newest catalog batch_id present in any catalog raw table
    (each catalog batch is a full snapshot; looking at all four tables keeps a snapshot whose
    one file happens to be empty from making an older batch look current).

    A catalog preview (`consent-center catalog-preview`) loads a candidate catalog as batch
    `preview-<name>` and builds the consent models into *_preview schemas with the dbt var
    `catalog_batch_id` pointing at it; ordinary runs never see preview batches.
-#}
{% macro current_catalog_batch_id() -%}
    {%- if var('catalog_batch_id', none) -%}
        {{ "'" ~ var('catalog_batch_id') ~ "'" }}::text
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
