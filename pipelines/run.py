"""`consent-center run`: materialise everything pending, through Dagster, from the command line.

Each batch is loaded by its partitioned ingestion job and then one `transform` run builds the
rest, all recorded in the Dagster instance under CONSENT_HOME, so runs started here show up in
the UI's history exactly like runs started there. The whole of it holds the run lock
(pipelines.resources.run_lock): beside a run in progress it does not start.

The run takes its instant once, at its start (CONSENT_NOW, else the real now), and hands it to
every job as CONSENT_NOW: golden_consent, the reports and the digest all state the same instant,
which the summary shows (`as_of`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg

from pipelines.database import database_url
from pipelines.resources import run_lock
from pipelines.settings import CLOCK_ENV, READ_CLOCK_ENV, Settings, as_of_text, clock_from_env
from sources.landing import Batch, all_complete_batches
from sources.schema import ensure_schema

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class RunSummary:
    batches_loaded: int = 0
    batches_failed: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    transform_ok: bool | None = None
    transform_error: str | None = None
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    log_file: str | None = None
    as_of: str | None = None  # the instant the run computed "current" at (ISO 8601)
    full_refresh: bool = False  # nothing taken over from the previous run (identity re-scored)
    rederive: bool = False  # every client derived again, identity kept
    derived: str | None = None  # what the publication derived: every client, or how many

    @property
    def ok(self) -> bool:
        return not self.batches_failed and self.transform_ok is not False


@contextlib.contextmanager
def exported_settings(settings: Settings, url: str, as_of: str | None = None) -> Iterator[None]:
    """Jobs run in this process read their resources from the environment: point it at ours
    for the duration of the run, then put the caller's environment back.

    Every job gets the run's instant as CONSENT_NOW; golden_consent learns from
    CONSENT_READ_CLOCK whether the operator pinned it (readers then read at that instant) or
    the run took the real now (readers read at theirs)."""
    pinned = settings.clock is not None or clock_from_env() is not None
    values = {
        "CONSENT_HOME": str(settings.home),
        "CONSENT_LANDING_DIR": str(settings.landing_dir),
        "CONSENT_DATABASE_URL": None if settings.uses_embedded_server else url,
        "DAGSTER_HOME": str(settings.dagster_home),
        READ_CLOCK_ENV: "as_of" if pinned else "now",
    }
    if as_of is not None:
        values[CLOCK_ENV] = as_of
    previous = {key: os.environ.get(key) for key in values}
    try:
        _set_environment(values)
        yield
    finally:
        _set_environment(previous)


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def prepare_dagster_home(settings: Settings) -> None:
    """Point Dagster at CONSENT_HOME so run history persists between commands and the UI."""
    from pipelines.dagster_storage import dagster_yaml, written_by_consent_center

    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    ours = dagster_yaml(settings.dagster_home)
    current = config.read_text() if config.exists() else None
    # a configuration of the user's own is left alone
    if current != ours and (current is None or written_by_consent_center(current)):
        config.write_text(ours)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)


def registered_batches(conn: psycopg.Connection) -> int:
    """How many batches this database has ever registered (loaded or failed): 0 on a new one."""
    if conn.execute("select to_regclass('consent.ingest_batches')").fetchone()[0] is None:
        return 0
    return conn.execute("select count(*) from consent.ingest_batches").fetchone()[0]


def pending_batches(conn: psycopg.Connection, settings: Settings) -> list[Batch]:
    loaded = {
        (source, batch_id)
        for source, batch_id in conn.execute(
            "select source, batch_id from consent.ingest_batches where status = 'loaded'"
        )
    }
    return [
        b
        for b in all_complete_batches(settings.landing_dir)
        if (b.source, b.batch_id) not in loaded
    ]


def _run_error(result) -> str:
    """The failing step's error in one line: the exception the step raised, not Dagster's
    wrapper around it ("Error occurred while executing op ..."), with its class; Dagster keeps
    the full text and the traceback in the run."""
    for event in result.all_events:
        if event.is_step_failure and event.event_specific_data is not None:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                while error.cause is not None and error.cls_name.startswith("Dagster"):
                    error = error.cause
                lines = [line.strip() for line in error.message.splitlines() if line.strip()]
                first = lines[0] if lines else error.cls_name
                return first if first.startswith(error.cls_name) else f"{error.cls_name}: {first}"
    return "run failed (see the run in the Dagster UI)"


def run_pipeline(
    settings: Settings,
    on_step: Callable[[str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    full_refresh: bool = False,
    rederive: bool = False,
) -> RunSummary:
    """Ingest every pending batch, then transform; never raises for a bad batch.

    full_refresh: the `full_refresh` job instead of `transform`, which takes nothing over from
    the previous run (every record's identity scored again). rederive: every client derived
    again from every batch, identity kept as resolved. Raises RunInProgress (one line
    naming it) when another run holds the run lock.
    """
    started = time.perf_counter()
    url = database_url(settings)
    # one instant for the whole run, every job included
    as_of = as_of_text(settings.now())
    with run_lock(url, "consent-center run"), exported_settings(settings, url, as_of):
        prepare_dagster_home(settings)
        return _run_pipeline(
            settings, url, started, on_step, on_total, as_of, full_refresh, rederive
        )


def _run_pipeline(
    settings, url, started, on_step, on_total, as_of: str, full_refresh: bool, rederive: bool
) -> RunSummary:
    summary = RunSummary(as_of=as_of, full_refresh=full_refresh, rederive=rederive)
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        pending = pending_batches(conn, settings)
    if on_total:
        on_total(len(pending) + 1)

    from dagster import DagsterInstance

    from pipelines.definitions import defs

    instance = DagsterInstance.get()
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"run-{time.strftime('%Y%m%dT%H%M%S')}.log"
    summary.log_file = str(log_path)
    with (
        open(log_path, "a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        _execute(defs, instance, pending, summary, on_step)
    _collect_counts(url, pending, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _execute(defs, instance, pending: list[Batch], summary: RunSummary, on_step) -> None:
    """Run the jobs in this process; their chatter (dbt's log lines) goes to the run log."""
    for batch in pending:
        if on_step:
            on_step(f"loading {batch.source}/{batch.batch_id}")
        job = defs.resolve_job_def(f"ingest_{batch.source}")
        instance.add_dynamic_partitions(f"{batch.source}_batches", [batch.batch_id])
        result = job.execute_in_process(
            instance=instance,
            partition_key=batch.batch_id,
            run_config=QUIET_RUN_CONFIG,
            raise_on_error=False,
        )
        if not result.success:
            summary.batches_failed.append(f"{batch.source}/{batch.batch_id}")
            summary.failures.append(f"{batch.source}/{batch.batch_id}: {_run_error(result)}")

    if on_step:
        on_step("full refresh (dbt build)" if summary.full_refresh else "transforming (dbt build)")
    from pipelines.jobs import REDERIVE_CONFIG

    transform = defs.resolve_job_def("full_refresh" if summary.full_refresh else "transform")
    run_config = dict(QUIET_RUN_CONFIG)
    if summary.rederive and not summary.full_refresh:
        run_config.update(REDERIVE_CONFIG)
    result = transform.execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False
    )
    summary.transform_ok = result.success
    if not result.success:
        summary.transform_error = _run_error(result)
        summary.failures.append(f"transform: {summary.transform_error}")


def _collect_counts(url: str, pending: list[Batch], summary: RunSummary) -> None:
    with psycopg.connect(url) as conn:
        summary.derived = _derived(conn) if summary.transform_ok else None
        keys = [(b.source, b.batch_id) for b in pending]
        for status, read, loaded, rejected in conn.execute(
            "select status, rows_read, rows_loaded, rows_rejected from consent.ingest_batches "
            "where (source, batch_id) in (select * from unnest(%s::text[], %s::text[]))",
            ([k[0] for k in keys], [k[1] for k in keys]),
        ):
            if status == "loaded":
                summary.batches_loaded += 1
            summary.rows_read += read
            summary.rows_loaded += loaded
            summary.rows_rejected += rejected


def _derived(conn: psycopg.Connection) -> str | None:
    """What the last publication derived, in words: every client, or how many."""
    recorded = conn.execute(
        "select 1 from pg_attribute where attrelid = to_regclass('consent.publication') "
        "and attname = 'derivation'"
    ).fetchone()
    if not recorded:
        return None
    row = conn.execute(
        "select derivation, affected_clients from consent.publication "
        "where derivation is not null order by published_at desc limit 1"
    ).fetchone()
    if row is None:
        return None
    derivation, affected = row
    if derivation == "incremental":
        return f"{affected:,} clients (those the new data and the clock reached)"
    return "every client"
