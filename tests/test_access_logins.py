"""Who may read what, proved with real logins over the real server, and private files on disk.

A whole `consent-center run` builds the worked example; then a person's login, created by
`consent-center grant`, connects with its own password and reads what its role allows and
nothing else; a connection without a password is refused; and every file the run wrote under
CONSENT_HOME is its owner's only.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from assets.access import PERSONAL_COLUMNS
from tests.conftest import EXAMPLES, fresh_database

CLI = [sys.executable, "-m", "pipelines.cli"]
EMBEDDED = not os.environ.get("CONSENT_DATABASE_URL")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("access")
    landing = root / "landing"
    shutil.copytree(EXAMPLES, landing)
    with fresh_database(server_url) as url:
        env = {
            "CONSENT_DATABASE_URL": url,
            "CONSENT_HOME": str(root / "home"),
            "CONSENT_LANDING_DIR": str(landing),
        }
        result = _cli("run", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        logins: list[str] = []
        yield {"url": url, "env": env, "home": root / "home", "logins": logins}
        with psycopg.connect(server_url, autocommit=True) as admin:
            for login in logins:  # roles are cluster-wide
                admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(login)))


def _grant(built, role: str, login: str) -> subprocess.CompletedProcess:
    built["logins"].append(login)
    return _cli("grant", "--role", role, "--login", login, env=built["env"])


def _as(url: str, login: str, password: str | None) -> str:
    params = conninfo_to_dict(url)
    params.pop("password", None)
    params["user"] = login
    if password is not None:
        params["password"] = password
    return make_conninfo(**params)


def _denied(conn: psycopg.Connection, query: sql.Composable) -> bool:
    try:
        with conn.transaction():
            conn.execute(query)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_a_login_granted_consent_analyst_reads_consents_but_no_personal_data(built):
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    created = _grant(built, "consent_analyst", login)
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]  # shown once, alone on the last line
    assert len(password) >= 20 and login in created.stdout
    with psycopg.connect(built["url"]) as owner:
        assert owner.execute(
            "select rolcanlogin, rolpassword like 'SCRAM-SHA-256$%%' from pg_authid "
            "where rolname = %s",
            (login,),
        ).fetchone() == (True, True)  # stored as a verifier, never as the password
        personal = owner.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'consent' and column_name = any(%s) order by 1, 2",
            (sorted(PERSONAL_COLUMNS),),
        ).fetchall()
        private_tables = owner.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'staging') order by 1, 2"
        ).fetchall()
    assert ("golden_client", "last_name") in personal and len(personal) >= 6
    assert ("raw", "crm_clients") in private_tables and len(private_tables) >= 10

    with psycopg.connect(_as(built["url"], login, password), autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone()[0] == login
        statuses = conn.execute(
            "select client_id, purpose, channel, status, valid_from from consent.golden_consent"
        ).fetchall()
        assert (
            statuses and conn.execute("select count(*) from consent.consent_history").fetchone()[0]
        )
        assert conn.execute(
            "select count(client_id), sum(source_record_count) from consent.golden_client"
        ).fetchone()[0]
        for table, column in personal:
            query = sql.SQL("select {} from {} limit 1").format(
                sql.Identifier(column), sql.Identifier("consent", table)
            )
            assert _denied(conn, query), f"consent_analyst reads consent.{table}.{column}"
        assert _denied(conn, sql.SQL("select * from consent.golden_client"))
        for schema, table in private_tables:
            query = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
            assert _denied(conn, query), f"consent_analyst reads {schema}.{table}"

    # granting again, to an existing login: no new password, nothing else changes
    again = _grant(built, "consent_analyst", login)
    assert again.returncode == 0 and "existing login" in again.stdout
    assert password not in again.stdout


def test_a_marketing_login_reads_only_its_two_tables(built):
    login = f"marketing_{uuid.uuid4().hex[:8]}"
    created = _grant(built, "consent_marketing", login)
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]
    with psycopg.connect(_as(built["url"], login, password), autocommit=True) as conn:
        assert conn.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
        conn.execute("select count(*) from consent.consent_change")
        for table in ("consent_event", "golden_client", "client_xref", "dq_rejections"):
            query = sql.SQL("select count(*) from {}").format(sql.Identifier("consent", table))
            assert _denied(conn, query), f"consent_marketing reads consent.{table}"


@pytest.mark.skipif(not EMBEDDED, reason="the embedded server's authentication")
def test_a_connection_without_the_password_is_refused(built, server_url):
    login = f"nopass_{uuid.uuid4().hex[:8]}"
    created = _grant(built, "consent_dpo", login)
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]
    for user, secret in ((login, None), (login, "not-the-password"), ("postgres", None)):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_as(built["url"], user, secret), connect_timeout=5)
    with psycopg.connect(_as(built["url"], login, password)) as conn:
        assert conn.execute("select count(*) from raw.crm_clients").fetchone()[0] > 0


def test_grant_refuses_unknown_roles_and_odd_logins_in_one_line(built):
    for role, login in (
        ("consent_admin", "someone"),
        ("consent_analyst", 'x"; drop role postgres; --'),
        ("consent_analyst", "consent_dpo"),
        ("consent_analyst", "postgres"),
    ):
        refused = _cli("grant", "--role", role, "--login", login, env=built["env"])
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), refused.stderr
    with psycopg.connect(built["url"]) as owner:
        assert owner.execute("select count(*) from pg_roles where rolname = 'postgres'").fetchone()


def test_every_file_a_run_writes_under_consent_home_is_private(built):
    home: Path = built["home"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files, folders = [], []
    for folder, dirs, names in os.walk(home):
        folders += [Path(folder) / d for d in dirs]
        files += [Path(folder) / n for n in names]
    # the run wrote reports, Data Docs, the change feed, logs and Dagster's instance here
    assert any(p.suffix == ".html" for p in files) and any("dagster" in p.parts for p in files)
    assert len(files) >= 10
    exposed = [
        f"{p.relative_to(home)} {stat.S_IMODE(os.lstat(p).st_mode):o}"
        for p in files + folders
        if os.lstat(p).st_mode & 0o077
    ]
    assert exposed == []
