-- The newest version of each CRM contract: a later export repeats a contract, and may close it
-- (closed_at) or correct it. Newest = the lexically greatest batch (DESIGN section 5), then the
-- last line of that batch. The one definition of "the contract as it stands" that the matrix
-- derivation, the CRM ticks, the conflicts and the depersonalisation report all read.
-- A table, analysed once built: the staged view parses every batch's raw text, and its
-- DISTINCT ON is estimated at 200 rows, which misled the planner of every reader.
{{ config(materialized='table', post_hook=["{{ analyze_for_readers() }}"]) }}

select distinct on (contract_id) *
from {{ ref('stg_crm__contracts') }}
where contract_id is not null
order by contract_id, batch_id desc, line_number desc
