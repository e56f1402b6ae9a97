-- The catalog snapshot in force (the newest complete catalog batch): its product matrix.
{{ config(materialized='table') }}
select * from {{ ref('stg_catalog__product_matrix') }} where batch_id = {{ current_catalog_batch_id() }}
