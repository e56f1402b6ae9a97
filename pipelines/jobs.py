"""Jobs: one ingestion job per source (partitioned by batch) and one transform job.

Every job runs with `run_locked_executor` (pipelines.resources): its steps run in the run's own
process, as in `consent-center run`, all inside the run lock, whether the schedule, the sensor or
the UI launched it, so two runs never interleave.
"""

from dagster import AssetSelection, define_asset_job

from assets.identity.assets import MODEL_KEY as IDENTITY_MODEL_KEY
from assets.ingest import BATCH_PARTITIONS, INGEST_ASSETS, INGEST_GROUP
from pipelines.resources import run_locked_executor

INGEST_JOBS = {
    name: define_asset_job(
        name=f"ingest_{name}",
        selection=AssetSelection.assets(asset),
        partitions_def=BATCH_PARTITIONS[name],
        description=f"Load one {name} batch from the landing zone into its raw tables.",
        executor_def=run_locked_executor,
    )
    for name, asset in INGEST_ASSETS.items()
}

#: everything downstream of the raw tables; retraining the identity model is its own job
DOWNSTREAM_OF_RAW = (
    AssetSelection.all() - AssetSelection.groups(INGEST_GROUP)
    | AssetSelection.keys(["raw", "phone_numbers"])
) - AssetSelection.keys(IDENTITY_MODEL_KEY)

TRANSFORM_JOB = define_asset_job(
    name="transform",
    selection=DOWNSTREAM_OF_RAW,
    description="Everything downstream of the raw tables: phones, staging, golden tables, reports.",
    executor_def=run_locked_executor,
)

#: the run config that derives every client again from every batch, identity kept
#: (`consent-center run --rederive`)
REDERIVE_CONFIG = {"ops": {"dbt_consent_models": {"config": {"full_derivation": True}}}}
#: the run config of a full refresh: identity scores every record again, as on a first run, and
#: every client is derived again
FULL_REFRESH_CONFIG = {
    "ops": {
        "identity_resolution": {"config": {"full_refresh": True}},
        **REDERIVE_CONFIG["ops"],
    }
}

FULL_REFRESH_JOB = define_asset_job(
    name="full_refresh",
    selection=DOWNSTREAM_OF_RAW,
    config=FULL_REFRESH_CONFIG,
    description="The transform, with nothing taken over from the previous run: every record's "
    "identity scored again and every consent model rebuilt from the loaded batches "
    "(`consent-center run --full-refresh`). It must publish exactly what the daily runs did.",
    executor_def=run_locked_executor,
)

TRAIN_IDENTITY_JOB = define_asset_job(
    name="train_identity",
    selection=AssetSelection.keys(IDENTITY_MODEL_KEY),
    description="Retrain the splink person model on the staged records (run by hand, not nightly).",
    executor_def=run_locked_executor,
)
