"""The landing-zone sensor: new complete batches become partitions and ingestion runs.

Once every known batch is loaded and nothing is running, the sensor asks for one `transform` run
if raw data changed since the last successful one, so golden tables follow the landing zone.
While a run holds the run lock (a `consent-center run`, say, which loads the same batches), the
sensor asks for nothing and looks again at its next tick; the runs it launches wait for the lock.
"""

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.ingest import BATCH_PARTITIONS
from pipelines.jobs import INGEST_JOBS, TRANSFORM_JOB
from pipelines.resources import ConsentCenterResource, run_lock_holder
from sources.landing import all_complete_batches

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@sensor(
    name="landing_zone_sensor",
    jobs=[*INGEST_JOBS.values(), TRANSFORM_JOB],
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches CONSENT_LANDING_DIR for complete batches (_SUCCESS) and loads them.",
)
def landing_zone_sensor(
    context: SensorEvaluationContext, consent_center: ConsentCenterResource
) -> SensorResult | SkipReason:
    settings = consent_center.settings()
    with consent_center.connect() as conn:
        holder = run_lock_holder(conn)
    if holder:
        return SkipReason(f"a run is in progress: {holder}")
    batches = all_complete_batches(settings.landing_dir)
    add_requests = []
    run_requests = []
    for source, partitions in BATCH_PARTITIONS.items():
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        new = [b.batch_id for b in batches if b.source == source and b.batch_id not in known]
        if new:
            add_requests.append(partitions.build_add_request(new))
        for batch_id in new:
            run_requests.append(
                RunRequest(
                    job_name=INGEST_JOBS[source].name,
                    partition_key=batch_id,
                    run_key=f"{source}:{batch_id}",
                )
            )
    if run_requests:
        return SensorResult(run_requests=run_requests, dynamic_partitions_requests=add_requests)

    in_flight = context.instance.get_runs(RunsFilter(statuses=IN_FLIGHT), limit=1)
    if in_flight:
        return SkipReason("runs in progress; transform waits for them")
    with consent_center.connect() as conn:
        row = (
            conn.execute(
                "select max(finished_at) from consent.ingest_batches where status = 'loaded'"
            ).fetchone()
            if _has_registry(conn)
            else None
        )
    last_load = row[0] if row else None
    if last_load is None:
        return SkipReason("nothing loaded yet")
    return SensorResult(
        run_requests=[
            RunRequest(job_name=TRANSFORM_JOB.name, run_key=f"transform:{last_load.isoformat()}")
        ]
    )


def _has_registry(conn) -> bool:
    return conn.execute("select to_regclass('consent.ingest_batches')").fetchone()[0] is not None
