"""A fresh install, invoked the way cron or systemd invoke it (issue 16, point 13).

`.venv/bin/consent-center run` is called by its full path from another folder, with PATH reduced
to `/usr/bin:/bin` (the virtual environment's bin/ is not on it), on a checkout whose dbt
manifest has never been built, with a brand-new CONSENT_HOME and its embedded server. The command
must find dbt beside its own interpreter, parse the project, load the landing zone and build
everything, exactly as it does from an activated environment.

The checkout is a copy of the project's code in tmp_path (PYTHONPATH makes the environment's
interpreter import the copy instead of the working tree), so the test owns a project without
`dbt_project/target/` and never removes the manifest that other tests use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from pipelines.settings import PROJECT_ROOT
from tests.conftest import EXAMPLE_XREF, EXAMPLES

# the installed console script, as a crontab line names it
CONSENT_CENTER = Path(sys.executable).parent / "consent-center"
CODE = ("pipelines", "assets", "sources", "dbt_project", "expectations")
NOT_COPIED = shutil.ignore_patterns("__pycache__", "target", "logs", ".user.yml")


def _fresh_checkout(root: Path) -> Path:
    for name in CODE:
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=NOT_COPIED)
    for name in ("workspace.yaml", "pyproject.toml"):
        shutil.copy2(PROJECT_ROOT / name, root / name)
    return root


def _consent_center(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CONSENT_CENTER), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _log_tail(home: Path) -> str:
    logs = sorted((home / "logs").glob("*.log"))
    return "\n" + logs[-1].read_text(errors="replace")[-4000:] if logs else ""


def test_run_by_full_path_without_the_environment_on_path_on_a_fresh_checkout(tmp_path):
    assert CONSENT_CENTER.exists(), f"the console script is not installed: {CONSENT_CENTER}"
    checkout = _fresh_checkout(tmp_path / "checkout")
    assert not (checkout / "dbt_project" / "target").exists()
    landing = tmp_path / "landing"
    shutil.copytree(EXAMPLES, landing)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # outside pytest's tmp_path: the embedded server may run as its own system user (see conftest)
    home = Path(tempfile.mkdtemp(prefix="consent-fresh-"))
    env = {  # what cron hands a job: no virtual environment, no CONSENT_DATABASE_URL
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "COLUMNS": "120",
        "PYTHONPATH": str(checkout),
        "CONSENT_HOME": str(home),
        "CONSENT_LANDING_DIR": str(landing),
    }
    try:
        run = _consent_center("run", env=env, cwd=elsewhere)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + _log_tail(home)
        assert "dbt executable" not in run.stdout + run.stderr
        assert "batches loaded │ 5" in run.stdout
        assert "transform      │ ok" in run.stdout
        # dbt parsed the copy, the project that was run (not the working tree's manifest)
        assert (checkout / "dbt_project" / "target" / "manifest.json").exists()

        url = _consent_center("db-url", env=env, cwd=elsewhere)
        assert url.returncode == 0, url.stderr
        with psycopg.connect(url.stdout.strip().splitlines()[-1]) as conn:
            records = conn.execute(
                "select source, source_record_id from consent.client_xref"
            ).fetchall()
            assert sorted(records) == sorted((source, record) for source, record, _ in EXAMPLE_XREF)
            assert conn.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
    finally:
        stopped = _consent_center("stop", env=env, cwd=elsewhere)
        shutil.rmtree(home, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
