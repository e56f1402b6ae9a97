"""Jobs: one ingestion job per source (partitioned by batch) and one transform job."""

from dagster import AssetSelection, define_asset_job

from assets.ingest import BATCH_PARTITIONS, INGEST_ASSETS, INGEST_GROUP

INGEST_JOBS = {
    name: define_asset_job(
        name=f"ingest_{name}",
        selection=AssetSelection.assets(asset),
        partitions_def=BATCH_PARTITIONS[name],
        description=f"Load one {name} batch from the landing zone into its raw tables.",
    )
    for name, asset in INGEST_ASSETS.items()
}

TRANSFORM_JOB = define_asset_job(
    name="transform",
    selection=AssetSelection.all() - AssetSelection.groups(INGEST_GROUP)
    | AssetSelection.keys(["raw", "phone_numbers"]),
    description="Everything downstream of the raw tables: phones, staging, golden tables, reports.",
)
