"""Running dbt outside Dagster (tests, benchmarks, previews) against a given database URL."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime

import yaml

from pipelines.database import libpq_params
from pipelines.settings import DBT_PROJECT_DIR, as_of_text, consent_now, dbt_executable

# dbt's sessions check every few seconds that dbt is still there: a query of a killed run
# (its dbt died with it, pipelines/dbt_child.py) is then cancelled instead of running on
# beside the next run
DBT_SESSION_OPTIONS = "-c client_connection_check_interval=5s"
#: the run's instant for the as_of macro, when no var `as_of` is given (the pipeline's dbt steps
#: set it: pipelines.resources.ConsentCenterResource.export_dbt_env)
DBT_AS_OF_ENV = "CONSENT_DBT_AS_OF"


def dbt_profile_env(url: str) -> dict[str, str]:
    """The variables dbt's profile reads (CONSENT_PG_*), and libpq's session options."""
    env = {f"CONSENT_PG_{key.upper()}": value for key, value in libpq_params(url).items()}
    env["PGOPTIONS"] = DBT_SESSION_OPTIONS
    return env


def dbt_env(url: str) -> dict[str, str]:
    """The whole environment of a dbt subprocess pointed at `url`."""
    return {**os.environ, **dbt_profile_env(url)}


def with_as_of(args: list[str] | tuple[str, ...], as_of: datetime) -> list[str]:
    """dbt arguments with the var `as_of` set (merged into a --vars already given, which wins)."""
    args = list(args)
    if "--vars" in args:
        at = args.index("--vars")
        given = yaml.safe_load(args[at + 1]) or {}
        # a YAML instant given unquoted reads as a datetime: dbt gets it back as text
        args[at + 1] = json.dumps({"as_of": as_of_text(as_of), **given}, default=str)
        return args
    return [*args, "--vars", json.dumps({"as_of": as_of_text(as_of)})]


def run_dbt(
    url: str, *args: str, timeout: int = 1800, as_of: datetime | None = None
) -> subprocess.CompletedProcess:
    """`dbt <args>` in the project; raises RuntimeError with dbt's output tail on failure.

    Always at an instant: the dbt var `as_of` is `as_of`, else CONSENT_NOW, else the real now
    (a `--vars` among `args` that sets as_of itself wins).
    """
    done = subprocess.run(
        [dbt_executable(), *with_as_of(args, as_of or consent_now()), "--profiles-dir", "."],
        cwd=DBT_PROJECT_DIR,
        env=dbt_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    return done
