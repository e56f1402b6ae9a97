"""Running dbt outside Dagster (tests, benchmarks, previews) against a given database URL."""

from __future__ import annotations

import os
import subprocess

from pipelines.database import libpq_params
from pipelines.settings import DBT_PROJECT_DIR, dbt_executable


def dbt_env(url: str) -> dict[str, str]:
    """The environment dbt's profile reads (CONSENT_PG_*), pointed at `url`."""
    return {**os.environ, **{f"CONSENT_PG_{k.upper()}": v for k, v in libpq_params(url).items()}}


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
