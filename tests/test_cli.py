"""The `consent-center` command as a person uses it: one command, a summary, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

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

    # a new batch with one broken file: it fails alone, the rest is loaded, exit code says so
    broken = landing / "crm" / "2024-07-01"
    shutil.copytree(landing / "crm" / "2024-06-01", broken)
    (broken / "contracts.csv").unlink()
    shutil.copytree(landing / "partner" / "2024-06-03", landing / "partner" / "2024-07-01")
    second = _cli("run", env=env)
    assert second.returncode == 1
    assert "batches loaded │ 1" in second.stdout
    assert "crm/2024-07-01" in second.stderr and "contracts.csv" in second.stderr


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
