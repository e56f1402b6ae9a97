"""Running dbt outside Dagster (tests, benchmarks, previews) against a given database URL."""

from __future__ import annotations

import os
import subprocess

from pipelines.database import libpq_params
from pipelines.settings import DBT_PROJECT_DIR, dbt_executable

# dbt's sessions check every few seconds that dbt is still there: a query of a killed run
# (its dbt died with it, pipelines/dbt_child.py) is then cancelled instead of running on
# beside the next run
DBT_SESSION_OPTIONS = "-c client_connection_check_interval=5s"


def dbt_profile_env(url: str) -> dict[str, str]:
    """The variables dbt's profile reads (CONSENT_PG_*), and libpq's session options."""
    env = {f"CONSENT_PG_{key.upper()}": value for key, value in libpq_params(url).items()}
    env["PGOPTIONS"] = DBT_SESSION_OPTIONS
    return env


def dbt_env(url: str) -> dict[str, str]:
    """The whole environment of a dbt subprocess pointed at `url`."""
    return {**os.environ, **dbt_profile_env(url)}


def run_dbt(url: str, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """`dbt <args>` in the project; raises RuntimeError with dbt's output tail on failure."""
    done = subprocess.run(
        [dbt_executable(), *args, "--profiles-dir", "."],
        cwd=DBT_PROJECT_DIR,
        env=dbt_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    return done
