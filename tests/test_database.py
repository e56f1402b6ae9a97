"""The embedded server: started on demand, shared by concurrent commands, stopped cleanly."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from pipelines.database import libpq_params, stop_embedded_server
from pipelines.settings import Settings, load_settings

START = (
    "from pipelines.database import database_url; import psycopg;"
    "u = database_url(); c = psycopg.connect(u); print(c.execute('select 1').fetchone()[0], u)"
)


@pytest.mark.skipif(bool(os.environ.get("CONSENT_DATABASE_URL")), reason="embedded server only")
def test_two_commands_starting_at_once_share_one_server_that_outlives_them(tmp_path):
    env = {**os.environ, "CONSENT_HOME": str(tmp_path / "home")}
    env.pop("CONSENT_DATABASE_URL", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", START], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1]  # same server, same URL
    url = outputs[0][1]
    settings = Settings(home=tmp_path / "home", landing_dir=tmp_path, database_url=None)
    try:
        # the commands have exited; the server still serves
        with psycopg.connect(url) as conn:
            assert conn.execute("show timezone").fetchone()[0] == "Europe/Moscow"
            assert conn.execute("show wal_level").fetchone()[0] == "minimal"
    finally:
        assert stop_embedded_server(settings) is True
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert stop_embedded_server(settings) is False


def test_database_url_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("CONSENT_DATABASE_URL", "postgresql://u:p@db.internal:6543/mdm")
    monkeypatch.setenv("CONSENT_HOME", str(tmp_path))
    settings = load_settings()
    assert not settings.uses_embedded_server
    assert settings.landing_dir == tmp_path / "landing"


def test_socket_urls_become_dbt_profile_parameters():
    assert libpq_params("postgresql://postgres:@/consent?host=/tmp/x/pgdata") == {
        "host": "/tmp/x/pgdata",
        "port": "5432",
        "user": "postgres",
        "password": "",
        "dbname": "consent",
    }
    assert libpq_params("postgresql://u:s%40cret@db:6543/mdm")["password"] == "s@cret"
