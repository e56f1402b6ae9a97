"""The one Dagster `Definitions` of consent-center: assets, jobs, sensor, schedule, resources."""

from dagster import Definitions
from dagster_dbt import DbtCliResource

from assets.access import database_roles
from assets.api_revocations import api_revocations
from assets.calendar import production_calendar
from assets.change_feed import consent_change_feed
from assets.consent_checks import matches_generator_expected_statuses
from assets.depersonalisation import depersonalisation
from assets.exports import report_csv_exports
from assets.identity.assets import IDENTITY_ASSETS, IDENTITY_CHECKS  # issue 4: splink
from assets.ingest import INGEST_ASSETS, phone_numbers
from assets.notifications import email_digest
from assets.quality import QUALITY_ASSETS  # issue 6: form validation (GX) + asset checks
from assets.transform import DBT_ASSETS, dbt_project
from pipelines.alerts import run_failure_alert
from pipelines.jobs import FULL_REFRESH_JOB, INGEST_JOBS, TRAIN_IDENTITY_JOB, TRANSFORM_JOB
from pipelines.resources import ConsentCenterResource, run_locked_executor
from pipelines.schedules import daily_transform
from pipelines.sensors import landing_zone_sensor
from pipelines.settings import dbt_executable

defs = Definitions(
    assets=[
        *INGEST_ASSETS.values(),
        phone_numbers,
        production_calendar,
        api_revocations,
        *DBT_ASSETS,
        *QUALITY_ASSETS,
        *IDENTITY_ASSETS,
        consent_change_feed,
        depersonalisation,
        database_roles,
        report_csv_exports,
        email_digest,
    ],
    asset_checks=[matches_generator_expected_statuses, *IDENTITY_CHECKS],
    jobs=[*INGEST_JOBS.values(), TRANSFORM_JOB, FULL_REFRESH_JOB, TRAIN_IDENTITY_JOB],
    sensors=[landing_zone_sensor, run_failure_alert],
    schedules=[daily_transform],
    # ad-hoc materialisations from the UI run in the implicit job: inside the run lock too
    executor=run_locked_executor,
    resources={
        "consent_center": ConsentCenterResource(),
        "dbt": DbtCliResource(
            project_dir=dbt_project,
            profiles_dir=str(dbt_project.profiles_dir),
            dbt_executable=dbt_executable(),
        ),
    },
)
