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
