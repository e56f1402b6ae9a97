"""Dagster resources: where the landing zone is and which PostgreSQL to use, and the run lock.

Both read the project's environment variables at run time (CONSENT_HOME, CONSENT_LANDING_DIR,
CONSENT_DATABASE_URL), so the UI, sensors, schedules and the CLI always agree on the target.

One run at a time (DESIGN section 12): whatever executes the pipeline holds a PostgreSQL session
advisory lock on the database for the whole run. `consent-center run` takes it before it looks at
the landing zone and keeps it until its last job has finished (it executes the Dagster jobs in
its own process). A run launched by Dagster (the schedule, the sensor, the UI) takes it in its
executor, `run_locked_executor`, which every job uses: the steps run in the run's own process,
inside the lock, from the first to the last. The CLI refuses to start beside a run in progress,
with one line naming it; a Dagster-launched run waits for the lock (the sensor may launch several
ingestion runs at once, and a refused one would never be retried). The holder is recorded in
`consent.run_lock`; the lock itself dies with the holder's database session, so a run killed
with kill -9 leaves nothing to clean up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import psycopg
from dagster import (
    ConfigurableResource,
    Executor,
    InitResourceContext,
    executor,
    in_process_executor,
)
from pydantic import PrivateAttr

from pipelines.database import database_url
from pipelines.dbt_cli import DBT_AS_OF_ENV, dbt_profile_env
from pipelines.settings import (
    DBT_PROJECT_DIR,
    Settings,
    as_of_text,
    load_settings,
    parse_clock,
)


class ConsentCenterResource(ConfigurableResource):
    """The project's local state and database; fields left empty fall back to the environment.

    `now` pins the run's instant like CONSENT_NOW does (an ISO 8601 instant, naive = Moscow);
    empty, CONSENT_NOW applies, else the real now. A run takes its instant once, when the
    resource is set up for it, so every step of the run computes "current" at the same one.
    """

    home: str | None = None
    landing_dir: str | None = None
    database_url: str | None = None
    now: str | None = None
    _as_of: datetime | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._as_of = self.settings().now()

    def settings(self) -> Settings:
        base = load_settings()
        home = Path(self.home).resolve() if self.home else base.home
        landing = (
            Path(self.landing_dir).resolve()
            if self.landing_dir
            else (base.landing_dir if not self.home else home / "landing")
        )
        clock = parse_clock(self.now, "consent_center.now") if self.now else base.clock
        return replace(
            base,
            home=home,
            landing_dir=landing,
            database_url=self.database_url or base.database_url,
            clock=clock,
        )

    def as_of(self) -> datetime:
        """The run's instant: fixed when the run set this resource up, else read now."""
        return self._as_of or self.settings().now()

    def url(self) -> str:
        return database_url(self.settings())

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url(), **kwargs)

    def export_dbt_env(self, as_of: datetime | None = None) -> None:
        """dbt's profile reads CONSENT_PG_*, and the as_of macro CONSENT_DBT_AS_OF (the run's
        instant); set them for the dbt subprocess.

        The instant goes through the environment, not `--vars`: dbt reparses the whole project
        when its command-line vars change, but only the files that read an environment
        variable when that variable changes (stg_run__as_of and the marts that compute at it).
        """
        os.environ.update(dbt_profile_env(self.url()))
        if as_of is not None:
            os.environ[DBT_AS_OF_ENV] = as_of_text(as_of)

    def dbt_target_path(self, step: str) -> Path:
        """The folder a dbt step writes its artifacts to: CONSENT_HOME/dbt/<step>, the same for
        every run of this installation.

        One folder per step, not per invocation (dagster-dbt's default, inside the installed dbt
        project): a daily run no longer leaves ~15 MB behind per dbt step, and dbt finds its
        partial-parse state of the last run there. The last run's artifacts stay for
        inspection; its dbt.log (dbt appends) is dropped first, the run's log keeps the output.
        """
        path = self.settings().home / "dbt" / step
        path.mkdir(parents=True, exist_ok=True)
        (path / "dbt.log").unlink(missing_ok=True)
        # the first time, dagster-dbt would copy the project's partial-parse file here with
        # its mode (world-readable): copied here first, the copy is private like the rest
        seed = Path(os.environ.get("DBT_TARGET_PATH") or "target")
        seed = (seed if seed.is_absolute() else DBT_PROJECT_DIR / seed) / PARTIAL_PARSE_FILE
        if seed.exists() and not (path / PARTIAL_PARSE_FILE).exists():
            shutil.copyfile(seed, path / PARTIAL_PARSE_FILE)
        return path


#: dbt's saved parse of the project (dagster-dbt copies it into a new target folder)
PARTIAL_PARSE_FILE = "partial_parse.msgpack"


# --- one run at a time ----------------------------------------------------------------------

# one bigint key per database: the bytes of 'consent' (advisory locks are per database)
RUN_LOCK_KEY = int.from_bytes(b"consent", "big")
RUN_LOCK_DDL = """
create schema if not exists consent;
create table if not exists consent.run_lock (
    singleton   boolean primary key default true check (singleton),
    run_id      text not null,
    description text not null,
    started_at  timestamptz not null,
    finished_at timestamptz,
    pid         integer not null,
    host        text not null,
    backend_pid integer not null
);
comment on table consent.run_lock is
    'The run holding (or last holding) the run lock: a session advisory lock on this database.';
"""
WAIT_POLL_SECONDS = 2.0


class RunInProgress(RuntimeError):
    """Another run holds the run lock; the message names it, in one line."""


@dataclass
class RunLock:
    run_id: str
    description: str
    connection: psycopg.Connection


_held: RunLock | None = None  # the lock this process holds, if any


def current_run_lock() -> RunLock | None:
    return _held


def run_lock_holder(conn: psycopg.Connection) -> str | None:
    """Who holds the run lock now, in words; None when it is free."""
    row = conn.execute(
        "select pid from pg_locks where locktype = 'advisory' and granted "
        "and database = (select oid from pg_database where datname = current_database()) "
        "and classid = %s::bigint::oid and objid = %s::bigint::oid and objsubid = 1",
        (RUN_LOCK_KEY >> 32, RUN_LOCK_KEY & 0xFFFFFFFF),
    ).fetchone()
    if row is None:
        return None
    backend_pid = row[0]
    recorded = None
    if conn.execute("select to_regclass('consent.run_lock')").fetchone()[0] is not None:
        recorded = conn.execute(
            "select description, run_id, pid, host, started_at from consent.run_lock "
            "where backend_pid = %s and finished_at is null",
            (backend_pid,),
        ).fetchone()
    if recorded is None:  # taken a moment ago, not recorded yet
        return f"a run starting now (database session {backend_pid})"
    description, run_id, pid, host, started_at = recorded
    return (
        f"{description} {run_id} (pid {pid} on {host}, "
        f"started {started_at.astimezone():%Y-%m-%d %H:%M:%S %Z})"
    )


@contextlib.contextmanager
def run_lock(
    url: str,
    description: str,
    run_id: str | None = None,
    wait: bool = False,
    log: Callable[[str], None] | None = None,
) -> Iterator[RunLock]:
    """Hold the run lock of the database at `url` for the block.

    Re-entrant within a process (the CLI holds it while Dagster runs its jobs in-process).
    Without `wait`, raises RunInProgress naming the holder when another run has it.
    """
    global _held
    if _held is not None:
        yield _held
        return
    run_id = run_id or f"cli-{uuid.uuid4().hex[:12]}"
    conn = psycopg.connect(url, autocommit=True, application_name=f"consent-center {run_id}"[:63])
    try:
        waited = False
        while not conn.execute("select pg_try_advisory_lock(%s)", (RUN_LOCK_KEY,)).fetchone()[0]:
            holder = run_lock_holder(conn)
            if holder is None:  # released meanwhile: try again
                continue
            if not wait:
                raise RunInProgress(f"another run is in progress: {holder}; this one did not start")
            if not waited and log:
                log(f"waiting for the run in progress to finish: {holder}")
            waited = True
            time.sleep(WAIT_POLL_SECONDS)
        conn.execute(RUN_LOCK_DDL)
        conn.execute(
            "insert into consent.run_lock as l (run_id, description, started_at, pid, host, "
            "backend_pid) values (%s, %s, now(), %s, %s, pg_backend_pid()) "
            "on conflict (singleton) do update set run_id = excluded.run_id, "
            "description = excluded.description, started_at = excluded.started_at, "
            "finished_at = null, pid = excluded.pid, host = excluded.host, "
            "backend_pid = excluded.backend_pid",
            (run_id, description, os.getpid(), socket.gethostname()),
        )
        _held = RunLock(run_id=run_id, description=description, connection=conn)
        try:
            pause_point("locked")
            yield _held
        finally:
            _held = None
            with contextlib.suppress(psycopg.Error):
                conn.execute(
                    "update consent.run_lock set finished_at = now() where run_id = %s", (run_id,)
                )
                conn.execute("select pg_advisory_unlock(%s)", (RUN_LOCK_KEY,))
    finally:
        conn.close()


class _RunLockedExecutor(Executor):
    """Dagster's in-process executor, inside the run lock for the whole run."""

    def __init__(self, inner: Executor):
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        run = plan_context.dagster_run
        # the database of the `consent_center` resource as Definitions configures it (from the
        # environment); the CLI holds the lock itself and runs its jobs with execute_in_process
        with run_lock(
            ConsentCenterResource().url(),
            f"Dagster run of job {run.job_name}",
            run_id=run.run_id,
            wait=True,
            log=plan_context.log.info,
        ):
            yield from self._inner.execute(plan_context, execution_plan)


@executor(
    name="in_process_with_run_lock",
    config_schema=in_process_executor.config_schema.as_field(),
    requirements=in_process_executor.get_requirements,
)
def run_locked_executor(init_context):
    """Every step in the run's own process, all of them inside the run lock (one run at a time)."""
    return _RunLockedExecutor(in_process_executor.executor_creation_fn(init_context))


# --- test hook ------------------------------------------------------------------------------

PAUSE_ENV = "CONSENT_TEST_PAUSE_AT"
PAUSE_MAX_SECONDS = 600


def pause_point(step: str) -> None:
    """Test hook, not for production: hold a run at a known step.

    With CONSENT_TEST_PAUSE_AT=<step>, a run reaching <step> creates $CONSENT_HOME/paused-at-<step>
    and sleeps until that file is removed (at most 10 minutes), so a test can start a second run
    beside it or kill -9 it exactly there. Steps: `locked` (the run lock is taken, nothing is
    loaded yet), `change_feed_committed` (the change feed is committed, its files are not yet
    written), `batch_file_loaded` (sources.loader.load_batch has copied one file of a batch
    into its partition, inside the batch's still open transaction; it pauses after each file)
    and `publication_open` (pipelines.publication.publish has written everything inside its
    transaction and is about to take the readers' lock and commit).
    Without the variable this does nothing.
    """
    if os.environ.get(PAUSE_ENV) != step:
        return
    marker = load_settings().home / f"paused-at-{step}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + PAUSE_MAX_SECONDS
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
