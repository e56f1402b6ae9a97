"""Revocations received through the API, taken in by the run that folds them (DESIGN section 10).

The API stores every revocation at once (consent.api_revocation) and its overlay honours it
before any run. This asset marks the ones received so far as taken by this run (`taken_at`), at
the start of the transform: staging's stg_api__revocations shows the taken ones, the consent
models derive their events (source `api`, int_consent_events__api), and the derivation plan
counts them among the day's new input (pipelines/derivation_scope.py). One that arrives while
the run goes on stays pending, honoured by the overlay, for the next run.
"""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from pipelines.api.tables import ensure_api_tables
from pipelines.resources import ConsentCenterResource

API_REVOCATIONS_KEY = AssetKey(["consent", "api_revocations"])

TAKE = """
with taken as (
    update consent.api_revocation set taken_at = clock_timestamp()
    where taken_at is null
    returning 1
)
select count(*) from taken
"""


@asset(
    key=API_REVOCATIONS_KEY,
    group_name="api",
    kinds={"postgres"},
    description="Revocations received through the API (POST /v1/revocations), taken in by this "
    "run; until then the API's overlay honours them.",
)
def api_revocations(
    context: AssetExecutionContext, consent_center: ConsentCenterResource
) -> MaterializeResult:
    with consent_center.connect(autocommit=True) as conn:
        ensure_api_tables(conn)
        with conn.transaction():
            (taken,) = conn.execute(TAKE).fetchone()
        (total,) = conn.execute(
            "select count(*) from consent.api_revocation where taken_at is not null"
        ).fetchone()
    context.log.info(f"{taken} API revocations taken in ({total} in all)")
    return MaterializeResult(
        metadata={"taken": MetadataValue.int(taken), "taken_in_all": MetadataValue.int(total)}
    )
