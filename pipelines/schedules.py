"""Schedules: a nightly transform, so time-driven states (expiry, deadlines) follow the clock.

Beside a run in progress (a `consent-center run` at 04:00, say) the nightly run waits for the run
lock (pipelines.resources) and then starts; the two never interleave.
"""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from pipelines.jobs import TRANSFORM_JOB

daily_transform = ScheduleDefinition(
    name="daily_transform",
    job=TRANSFORM_JOB,
    cron_schedule="0 4 * * *",
    execution_timezone="Europe/Moscow",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Re-derive golden consents and reports every night at 04:00 Moscow time.",
)
