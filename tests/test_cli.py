"""The `consent-center` command as a person uses it: one command, a summary, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from pipelines.settings import DBT_PROJECT_DIR

CLI = [sys.executable, "-m", "pipelines.cli"]


def _cli(*args: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **env, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_loads_the_landing_zone_builds_staging_and_ends_with_a_summary(
    database_url, examples, tmp_path
):
    landing = tmp_path / "landing"
    shutil.copytree(examples, landing)
    env = {"CONSENT_LANDING_DIR": str(landing), "CONSENT_HOME": str(tmp_path / "home")}
    first = _cli("run", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "batches loaded │ 5" in first.stdout
    assert "rows rejected  │ 0" in first.stdout
    assert "transform      │ ok" in first.stdout
    with psycopg.connect(database_url) as conn:
        phones = conn.execute(
            "select source_record_id, phone_e164 from staging.stg_helpdesk__tickets"
        ).fetchall()
        assert phones == [("HD-10", "+79035550011")]
    # the Dagster instance under CONSENT_HOME remembers the runs, for the UI
    assert any((tmp_path / "home" / "dagster").rglob("*.db"))
    # each dbt step writes its artifacts under CONSENT_HOME, one folder per step, not a new
    # folder per run inside the installed dbt project
    dbt_steps = tmp_path / "home" / "dbt"
    assert sorted(p.name for p in dbt_steps.iterdir()) == [
        "dbt_consent_models",
        "dbt_staging_models",
    ]
    assert all(
        (dbt_steps / step / "run_results.json").exists()
        for step in ("dbt_consent_models", "dbt_staging_models")
    )
    assert not list((DBT_PROJECT_DIR / "target").rglob("dbt_*_models-*"))

    # a new batch with one broken file: it fails alone, the rest is loaded, exit code says so
    broken = landing / "crm" / "2024-07-01"
    shutil.copytree(landing / "crm" / "2024-06-01", broken)
    (broken / "contracts.csv").unlink()
    shutil.copytree(landing / "partner" / "2024-06-03", landing / "partner" / "2024-07-01")
    second = _cli("run", env=env)
    assert second.returncode == 1
    assert "batches loaded │ 1" in second.stdout
    assert "crm/2024-07-01" in second.stderr and "contracts.csv" in second.stderr
    # the second run's staging step reads the first's parse of the project (dbt's partial
    # parsing: the run's instant is an environment variable, not a var that changes each run)
    staging_log = (dbt_steps / "dbt_staging_models" / "dbt.log").read_text()
    assert '"name": "UnableToPartialParse"' not in staging_log
    assert '"name": "PartialParsingEnabled"' in staging_log


def test_an_empty_landing_zone_is_one_clear_error(database_url, tmp_path):
    result = _cli("run", env={"CONSENT_LANDING_DIR": str(tmp_path / "nothing")})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no complete batch" in lines[0]


def test_db_url_prints_a_url_psycopg_can_use(database_url):
    result = _cli("db-url", env={})
    assert result.returncode == 0
    with psycopg.connect(result.stdout.strip()) as conn:
        assert conn.execute("select current_database()").fetchone()[0].startswith("cc_test_")


def test_generate_then_run_on_a_fresh_home(tmp_path, database_url):
    out = tmp_path / "feeds"
    generated = _cli("generate", "--clients", "200", "--seed", "3", "--out", str(out), env={})
    assert generated.returncode == 0, generated.stderr
    assert (out / "truth" / "person_xref.csv").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "catalog",
        "crm",
        "helpdesk",
        "partner",
        "truth",
        "web",
    ]
    assert all(Path(p).exists() for p in out.glob("*/*/_SUCCESS"))


def test_a_stopped_run_stops_its_dbt_too_and_the_next_run_resumes(database_url, examples, tmp_path):
    """A scheduler stops `consent-center run` (SIGTERM) while dbt builds: dbt must not carry on
    writing on its own, and running the command again finishes the work. (Dagster turns the
    SIGTERM into its interrupt while a run executes, and dagster-dbt passes it on to dbt and
    waits for it; this holds the product to that.)"""
    import signal
    import time

    import psutil

    landing = tmp_path / "landing"
    shutil.copytree(examples, landing)
    env = {"CONSENT_LANDING_DIR": str(landing), "CONSENT_HOME": str(tmp_path / "home")}
    run = subprocess.Popen(
        [*CLI, "run"],
        env={**os.environ, **env, "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command = psutil.Process(run.pid)

    def is_dbt(process: psutil.Process) -> bool:
        try:
            return any(Path(part).name == "dbt" for part in process.cmdline()[:2])
        except psutil.Error:  # a short-lived child already gone
            return False

    deadline = time.monotonic() + 300
    dbt = []
    while not dbt and time.monotonic() < deadline and run.poll() is None:
        dbt = [child for child in command.children(recursive=True) if is_dbt(child)]
        time.sleep(0.2)
    assert dbt, "the run never started dbt"

    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    # the command stopped itself (an orderly failure, not killed by the signal), and only after
    # its dbt had stopped: a dbt left behind would keep writing through a long model
    assert run.returncode in (1, 130), (run.returncode, stderr)
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(dbt, timeout=2)
    assert not alive, "dbt kept running after its run was stopped"

    resumed = _cli("run", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "transform      │ ok" in resumed.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
