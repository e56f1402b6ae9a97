"""Sample data only for a new installation (DESIGN section 9).

`consent-center run` with an empty landing zone generates sample feeds first on a database that
never registered a batch. On an installation with history (files archived, a share not mounted
on its mount point) it must never do so: an empty landing zone loads nothing and says so in one
line; a missing one is an error, and nothing runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

CONSENT_CENTER = str(Path(sys.executable).parent / "consent-center")


def _env(home: Path, landing: Path | None) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "120", "CONSENT_HOME": str(home)}
    env.pop("CONSENT_TEST_PAUSE_AT", None)
    env.pop("CONSENT_LANDING_DIR", None)
    if landing is not None:
        env["CONSENT_LANDING_DIR"] = str(landing)
    return env


def _cli(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CONSENT_CENTER, "run"], env=env, capture_output=True, text=True, timeout=900
    )


def _state(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("select count(*) from consent.ingest_batches").fetchone()[0],
            conn.execute("select count(*) from raw.crm_clients").fetchone()[0],
            conn.execute("select count(*) from consent.golden_consent").fetchone()[0],
        )


def test_an_installation_with_history_never_gets_sample_data(database_url, examples, tmp_path):
    home = tmp_path / "home"
    archive = tmp_path / "share"
    shutil.copytree(examples, archive)
    loaded = _cli(_env(home, archive))
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    before = _state(database_url)
    assert before[0] == 5

    # the default landing zone ($CONSENT_HOME/landing) is missing: an error, nothing runs
    default = home / "landing"
    assert not default.exists()
    missing = _cli(_env(home, None))
    assert missing.returncode == 1, missing.stdout + missing.stderr
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not exist" in lines[0] and str(default) in lines[0]
    assert "generating" not in missing.stdout
    assert not default.exists()
    assert _state(database_url) == before

    # a share not mounted on its (empty) mount point, or every file archived: one line, no
    # sample data, nothing loaded; the state is derived again from what was loaded before
    default.mkdir()
    empty = _cli(_env(home, None))
    assert empty.returncode == 0, empty.stdout + empty.stderr
    lines = [line for line in empty.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nothing new to load" in lines[0], empty.stderr
    assert "generating" not in empty.stdout and "batches loaded │ 0" in empty.stdout
    assert list(default.iterdir()) == []
    assert _state(database_url) == before

    # (CONSENT_LANDING_DIR pointing at a folder whose files were archived takes the same path:
    # an installation with history and no complete batch; one run of it is enough)


def test_a_new_installation_generates_sample_feeds_first(database_url, tmp_path):
    """The quick start still works: a new database, no landing zone, sample data generated.
    (Stopped once loading has begun: the rest is an ordinary run.)"""
    home = tmp_path / "home"
    run = subprocess.Popen(
        [CONSENT_CENTER, "run"],
        env=_env(home, None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, which the kill below ends whole
    )
    try:
        deadline = time.monotonic() + 300
        started = False
        while not started and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            with psycopg.connect(database_url) as conn:
                started = (
                    conn.execute("select to_regclass('consent.ingest_batches')").fetchone()[0]
                    is not None
                    and conn.execute("select count(*) from consent.ingest_batches").fetchone()[0]
                    > 0
                )
        assert started, run.communicate()
    finally:
        # the whole group: a child left alive (dbt, a generator worker) would hold the pipes open
        with contextlib.suppress(ProcessLookupError):  # ended by itself: the assert says how
            os.killpg(run.pid, signal.SIGKILL)
        # the run itself, not its pipes: Dagster's compute-log `tail -F` helpers run in a
        # session of their own and hold them open for a while after the kill
        run.wait(timeout=60)
        run.stdout.close()
        run.stderr.close()
    landing = home / "landing"
    people = {
        line.rsplit(",", 1)[1]
        for line in (landing / "truth" / "person_xref.csv").read_text().splitlines()[1:]
    }
    assert len(people) == 2_000
    assert len(list(landing.glob("*/*/_SUCCESS"))) > 5
