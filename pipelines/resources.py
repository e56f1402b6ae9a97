"""Dagster resources: where the landing zone is and which PostgreSQL to use.

Both read the project's environment variables at run time (CONSENT_HOME, CONSENT_LANDING_DIR,
CONSENT_DATABASE_URL), so the UI, sensors, schedules and the CLI always agree on the target.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from dagster import ConfigurableResource

from pipelines.database import database_url, libpq_params
from pipelines.settings import Settings, load_settings


class ConsentCenterResource(ConfigurableResource):
    """The project's local state and database; fields left empty fall back to the environment."""

    home: str | None = None
    landing_dir: str | None = None
    database_url: str | None = None

    def settings(self) -> Settings:
        base = load_settings()
        home = Path(self.home).resolve() if self.home else base.home
        landing = (
            Path(self.landing_dir).resolve()
            if self.landing_dir
            else (base.landing_dir if not self.home else home / "landing")
        )
        return Settings(
            home=home, landing_dir=landing, database_url=self.database_url or base.database_url
        )

    def url(self) -> str:
        return database_url(self.settings())

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url(), **kwargs)

    def export_dbt_env(self) -> None:
        """dbt's profile reads CONSENT_PG_*; set them for the dbt subprocess."""
        for key, value in libpq_params(self.url()).items():
            os.environ[f"CONSENT_PG_{key.upper()}"] = value
