-- The catalog snapshot in force (the newest complete catalog batch): its consent types.
{{ config(materialized='table') }}
select * from {{ ref('stg_catalog__consent_types') }} where batch_id = {{ current_catalog_batch_id() }}
