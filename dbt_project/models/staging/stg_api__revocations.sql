-- Revocations received through the consent API and taken in by a run (DESIGN section 10).
-- Already typed where they are stored (consent.api_revocation: the API checked and widened
-- every code), so staging is a view: the ones a run has taken in, with the instant it did as
-- their batch_loaded_at (pipelines/derivation_scope.py counts the new ones by it).
{{ config(materialized='view') }}
select
    revocation_id,
    subject_source,
    subject_record_id,
    purposes,
    channels,
    received_at,
    received_via,
    evidence_url,
    doubt_reason,
    created_at                                                  as stored_at,
    taken_at                                                    as batch_loaded_at
from {{ source('quality', 'api_revocation') }}
where taken_at is not null
