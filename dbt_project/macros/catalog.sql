{#-
    The catalog batch in force: the newest catalog batch_id present in any catalog raw table
    (each catalog batch is a full snapshot; looking at all four tables keeps a snapshot whose
    one file happens to be empty from making an older batch look current).
-#}
{% macro current_catalog_batch_id() -%}
    (
        select max(catalog_batches.batch_id)
        from (
            select max(_batch_id) as batch_id from {{ source('raw', 'catalog_consent_types') }}
            union all
            select max(_batch_id) from {{ source('raw', 'catalog_wordings') }}
            union all
            select max(_batch_id) from {{ source('raw', 'catalog_product_matrix') }}
            union all
            select max(_batch_id) from {{ source('raw', 'catalog_crm_flag_map') }}
        ) as catalog_batches
    )
{%- endmacro %}
