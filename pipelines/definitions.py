"""The one Dagster `Definitions` of consent-center: assets, jobs, sensor, schedule, resources."""

from dagster import Definitions
from dagster_dbt import DbtCliResource

from assets.consent_checks import matches_generator_expected_statuses
from assets.ingest import INGEST_ASSETS, phone_numbers
from assets.quality import QUALITY_ASSETS  # issue 6: form validation (GX) + asset checks
from assets.transform import DBT_ASSETS, dbt_project
from pipelines.jobs import INGEST_JOBS, TRANSFORM_JOB
from pipelines.resources import ConsentCenterResource
from pipelines.schedules import daily_transform
from pipelines.sensors import landing_zone_sensor

defs = Definitions(
    assets=[*INGEST_ASSETS.values(), phone_numbers, *DBT_ASSETS, *QUALITY_ASSETS],
    asset_checks=[matches_generator_expected_statuses],
    jobs=[*INGEST_JOBS.values(), TRANSFORM_JOB],
    sensors=[landing_zone_sensor],
    schedules=[daily_transform],
    resources={
        "consent_center": ConsentCenterResource(),
        "dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir)),
    },
)
