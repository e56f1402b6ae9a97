-- The catalog snapshot in force (the newest complete catalog batch): its crm flag map.
{{ config(materialized='table') }}
select * from {{ ref('stg_catalog__crm_flag_map') }} where batch_id = {{ current_catalog_batch_id() }}
