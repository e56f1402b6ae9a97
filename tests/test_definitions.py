"""The Dagster code location loads, validates, and wires raw assets into dbt staging models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DagsterInstance, build_sensor_context

from pipelines.definitions import defs
from pipelines.resources import ConsentCenterResource
from pipelines.sensors import landing_zone_sensor

ROOT = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate_passes():
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Validation successful" in completed.stderr + completed.stdout


def test_raw_assets_feed_the_dbt_staging_models_in_one_graph():
    graph = defs.resolve_asset_graph()
    # raw -> the base view that parses it -> the table that stages it once per batch
    base = graph.get(AssetKey(["staging", "base_crm__clients"]))
    assert AssetKey(["raw", "crm_clients"]) in base.parent_keys
    assert AssetKey(["raw", "phone_numbers"]) in base.parent_keys
    staged = graph.get(AssetKey(["staging", "stg_crm__clients"]))
    assert staged.parent_keys == {
        AssetKey(["staging", "base_crm__clients"]),
        AssetKey(["quality", "ingest_batches"]),
    }
    for source in ("crm", "web", "helpdesk", "partner", "catalog"):
        job = defs.resolve_job_def(f"ingest_{source}")
        assert job.partitions_def is not None and job.partitions_def.name == f"{source}_batches"
    transform = defs.resolve_job_def("transform")
    assert transform.name == "transform"
    built = transform.asset_layer.executable_asset_keys
    # the transform job builds the golden tables and the reports, not the raw loads
    assert {
        AssetKey(["consent", "golden_consent"]),
        AssetKey(["consent", "report_revocation_deadlines"]),
    } <= built
    assert AssetKey(["raw", "crm_clients"]) not in built


def test_sensor_turns_new_complete_batches_into_partitions_and_runs(examples, database_url):
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(
            instance=instance,
            resources={"consent_center": ConsentCenterResource(landing_dir=str(examples))},
        )
        result = landing_zone_sensor(context)
        requested = sorted((r.job_name, r.partition_key) for r in result.run_requests)
        assert requested == [
            ("ingest_catalog", "2024-01-01"),
            ("ingest_crm", "2024-06-01"),
            ("ingest_helpdesk", "2024-06-03"),
            ("ingest_partner", "2024-06-03"),
            ("ingest_web", "2024-06-02"),
        ]
        added = {
            request.partitions_def_name: list(request.partition_keys)
            for request in result.dynamic_partitions_requests
        }
        assert added["crm_batches"] == ["2024-06-01"]
        # once the partitions exist the same batches are not requested again
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        again = landing_zone_sensor(context)
        assert not getattr(again, "run_requests", None)


def test_the_daily_transform_schedule_runs_the_transform_job_at_four_moscow_time():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from dagster import build_schedule_context

    schedule = defs.resolve_schedule_def("daily_transform")
    assert schedule.job_name == "transform"
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 4 * * *", "Europe/Moscow")
    assert schedule.default_status.value == "RUNNING"
    # the next ticks after 2024-06-10 12:00 Moscow: 04:00 each following day, Moscow time
    moscow = ZoneInfo("Europe/Moscow")
    # Dagster's own cron iterator (what its daemon ticks by), from 2024-06-10 12:00 Moscow
    from dagster._utils.schedules import cron_string_iterator

    ticks = cron_string_iterator(
        datetime(2024, 6, 10, 12, 0, tzinfo=moscow).timestamp(),
        schedule.cron_schedule,
        schedule.execution_timezone,
    )
    first, second = next(ticks), next(ticks)
    assert first == datetime(2024, 6, 11, 4, 0, tzinfo=moscow)
    assert second == datetime(2024, 6, 12, 4, 0, tzinfo=moscow)
    # evaluated as the daemon would at 04:00: one run request, for the transform job
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(instance=instance, scheduled_execution_time=first)
        requests = schedule.evaluate_tick(context).run_requests
    assert len(requests) == 1
    (request,) = requests
    assert request.job_name in (None, "transform")  # None: the schedule's own job
