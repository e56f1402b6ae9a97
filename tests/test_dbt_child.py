"""A run killed with kill -9 leaves no dbt behind: `consent-center-dbt` dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import psycopg

from pipelines.dbt_cli import dbt_env
from pipelines.settings import DBT_PROJECT_DIR, dbt_executable

# a stand-in for `consent-center run`: starts dbt the way dagster-dbt does, then waits
PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _sleeping_backends(conn) -> int:
    return conn.execute(
        "select count(*) from pg_stat_activity where query like '%pg_sleep(120)%' "
        "and pid <> pg_backend_pid()"
    ).fetchone()[0]


def test_dbt_started_by_a_run_dies_when_the_run_is_killed(database_url):
    assert os.path.basename(dbt_executable()) == "consent-center-dbt"
    command = [
        dbt_executable(),
        "show",
        "--inline",
        "select pg_sleep(120) as waited",
        "--profiles-dir",
        ".",
    ]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, *command],
        cwd=DBT_PROJECT_DIR,
        env=dbt_env(database_url),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = int(parent.stdout.readline())
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while _sleeping_backends(conn) == 0:
            assert time.monotonic() < deadline, "dbt never reached the database"
            assert parent.poll() is None
            time.sleep(0.5)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(child), "dbt outlived the run that started it"
        deadline = time.monotonic() + 30
        while _sleeping_backends(conn) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _sleeping_backends(conn) == 0


def test_dagster_dbt_reads_the_installed_dbt_version_at_once_and_offline():
    """dagster-dbt asks `--version` before every dbt step: the wrapper answers with dbt-core's
    own version number, in dbt's layout, without starting dbt or asking PyPI."""
    from dagster_dbt import DbtCliResource
    from dbt.version import __version__ as dbt_core_version
    from packaging.version import Version

    started = time.monotonic()
    done = subprocess.run(
        [dbt_executable(), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "no_proxy": "", "https_proxy": "http://127.0.0.1:9"},  # no network
    )
    assert done.returncode == 0 and time.monotonic() - started < 1.5, done
    assert f"installed: {dbt_core_version}" in done.stdout and "latest" not in done.stdout
    resource = DbtCliResource(project_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable())
    assert resource._cli_version == Version(dbt_core_version)
