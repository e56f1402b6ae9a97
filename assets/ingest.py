"""Ingestion assets: one partitioned multi-asset per landing-zone source, one partition per batch.

Each batch is a dynamic partition, so a data engineer sees every batch in the UI and can re-run
one (re-loading replaces its raw partition; nothing is duplicated). A batch whose file is missing
or unreadable fails its own run only.
"""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from pipelines.resources import ConsentCenterResource
from sources import SOURCES
from sources.loader import load_batch
from sources.phones import refresh_phone_numbers
from sources.readers import BatchFileError
from sources.schema import ensure_schema

INGEST_GROUP = "ingest"

BATCH_PARTITIONS: dict[str, DynamicPartitionsDefinition] = {
    name: DynamicPartitionsDefinition(name=f"{name}_batches") for name in SOURCES
}


def raw_asset_key(table: str) -> AssetKey:
    return AssetKey(["raw", table])


def _build_ingest_asset(source_name: str):
    source = SOURCES[source_name]
    specs = [
        AssetSpec(
            raw_asset_key(spec.table),
            description=f"Raw rows of {source_name}/{spec.file_name}, exactly as in the file, "
            "one partition per landing batch.",
            group_name=INGEST_GROUP,
            kinds={"postgres"},
            metadata={"landing_file": spec.file_name},
        )
        for spec in source.tables
    ]

    @multi_asset(
        name=f"load_{source_name}_batch",
        specs=specs,
        partitions_def=BATCH_PARTITIONS[source_name],
        description=source.description,
    )
    def ingest(context: AssetExecutionContext, consent_center: ConsentCenterResource):
        settings = consent_center.settings()
        batch_dir = settings.landing_dir / source_name / context.partition_key
        with consent_center.connect(autocommit=True) as conn:
            ensure_schema(conn)
            try:
                result = load_batch(conn, source_name, batch_dir)
            except BatchFileError as error:
                raise Failure(description=str(error)) from error
        by_file = {f.file_name: f for f in result.files}
        context.log.info(
            f"{source_name} batch {result.batch_id}: {result.rows_loaded} rows loaded, "
            f"{result.rows_rejected} rejected in {result.seconds:.1f}s"
        )
        for spec in source.tables:
            file_result = by_file.get(spec.file_name)
            yield MaterializeResult(
                asset_key=raw_asset_key(spec.table),
                metadata={
                    "batch_id": result.batch_id,
                    "rows_read": MetadataValue.int(file_result.rows_read if file_result else 0),
                    "rows_loaded": MetadataValue.int(file_result.rows_loaded if file_result else 0),
                    "rows_rejected": MetadataValue.int(
                        file_result.rows_rejected if file_result else 0
                    ),
                    "seconds": MetadataValue.float(round(result.seconds, 3)),
                },
            )

    return ingest


INGEST_ASSETS = {name: _build_ingest_asset(name) for name in SOURCES}

_PHONE_TABLES = [
    raw_asset_key(spec.table)
    for source in SOURCES.values()
    for spec in source.tables
    if "phone" in spec.column_names
]


@multi_asset(
    name="normalise_phone_numbers",
    specs=[
        AssetSpec(
            raw_asset_key("phone_numbers"),
            deps=_PHONE_TABLES,
            description="E.164 form (phonenumbers) of every distinct phone string in the feeds.",
            group_name=INGEST_GROUP,
            kinds={"python", "postgres"},
        )
    ],
)
def phone_numbers(context: AssetExecutionContext, consent_center: ConsentCenterResource):
    with consent_center.connect(autocommit=True) as conn:
        ensure_schema(conn)
        added = refresh_phone_numbers(conn)
        total = conn.execute("select count(*) from raw.phone_numbers").fetchone()[0]
    context.log.info(f"{added} new phone keys normalised ({total} known)")
    return MaterializeResult(metadata={"new_keys": added, "known_keys": total})
