-- The catalog snapshot in force (the newest complete catalog batch): its wordings.
{{ config(materialized='table') }}
select * from {{ ref('stg_catalog__wordings') }} where batch_id = {{ current_catalog_batch_id() }}
