"""Shared pieces of the benchmark scripts: a scratch database and peak-memory readings."""

from __future__ import annotations

import contextlib
import resource
import uuid
from collections.abc import Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipelines.database import create_database, database_url


@contextlib.contextmanager
def scratch_database(keep: bool = False) -> Iterator[str]:
    """A fresh database on the configured server, dropped afterwards unless `keep`."""
    admin_url = database_url()
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        create_database(admin, name)
    params = conninfo_to_dict(admin_url)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'drop database if exists "{name}" with (force)')


def peak_rss_mib() -> float:
    """Peak resident memory of this process and its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def server_backend_peak_mib(conn: psycopg.Connection) -> float | None:
    """Peak memory of this connection's server backend (Linux: VmHWM of its process)."""
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
