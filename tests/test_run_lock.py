"""One run at a time (DESIGN section 12): a second run beside a run in progress never interleaves.

`consent-center run` beside a run in progress is refused with one line naming that run; a run
that Dagster launches (schedule, sensor, UI: here `dagster job execute`, which runs the job with
its own executor, as the daemon's run worker does) waits for it. A run killed with kill -9 leaves
the lock free. The runs are held at a known step with the test hook CONSENT_TEST_PAUSE_AT
(pipelines.resources.pause_point).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from dagster import DagsterInstance, SkipReason, build_sensor_context

from pipelines.resources import ConsentCenterResource
from pipelines.sensors import landing_zone_sensor
from tests.cli_runs import CONSENT_CENTER, cli_env, copy_examples, kill_9, start_paused

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def _start_paused(env: dict[str, str], home: Path) -> subprocess.Popen:
    """`consent-center run` held right after it took the run lock."""
    run, _ = start_paused(
        [CONSENT_CENTER, "run"],
        env,
        home,
        "locked",
        timeout=120,
        what="the run never reached the run lock",
    )
    return run


def _holder(url: str):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select run_id, description, pid, started_at, finished_at from consent.run_lock"
        ).fetchone()


def _batches(url: str) -> int:
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass('consent.ingest_batches')").fetchone()[0] is None:
            return 0
        return conn.execute("select count(*) from consent.ingest_batches").fetchone()[0]


def test_a_second_run_is_refused_naming_the_run_in_progress_and_a_dagster_run_waits(
    database_url, examples, tmp_path
):
    landing, home = copy_examples(tmp_path, examples)
    env = cli_env(home, landing)
    first = _start_paused(env, home)
    try:
        run_id, description, pid, _, finished = _holder(database_url)
        assert (description, pid, finished) == ("consent-center run", first.pid, None)

        # a second CLI run: refused at once, one line naming the first, nothing loaded
        second = subprocess.run(
            [CONSENT_CENTER, "run"], env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 1, second.stdout + second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, second.stderr
        assert "in progress" in lines[0] and run_id in lines[0] and f"pid {first.pid}" in lines[0]
        assert "Traceback" not in second.stderr
        assert _batches(database_url) == 0

        # the sensor asks for no run meanwhile, and says why
        with DagsterInstance.ephemeral() as instance:
            context = build_sensor_context(
                instance=instance,
                resources={"consent_center": ConsentCenterResource(landing_dir=str(landing))},
            )
            skipped = landing_zone_sensor(context)
        assert isinstance(skipped, SkipReason) and run_id in skipped.skip_message

        # a Dagster-launched run (the job's own executor, as from the daemon) waits for it
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True, exist_ok=True)
        with DagsterInstance.from_config(str(dagster_home)) as instance:
            instance.add_dynamic_partitions("catalog_batches", ["2024-01-01"])
        launched = subprocess.Popen(
            [
                str(BIN / "dagster"),
                *("job", "execute", "-m", "pipelines.definitions", "-j", "ingest_catalog"),
                *("--tags", json.dumps({"dagster/partition": "2024-01-01"})),
            ],
            cwd=ROOT,
            env={**env, "DAGSTER_HOME": str(dagster_home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen = []
        deadline = time.monotonic() + 180
        for line in launched.stdout:
            seen.append(line)
            if "waiting for the run in progress" in line or time.monotonic() > deadline:
                break
        assert "waiting for the run in progress" in seen[-1] and run_id in seen[-1], seen[-20:]
        time.sleep(3)
        assert launched.poll() is None and _batches(database_url) == 0  # still waiting
    finally:
        (home / "paused-at-locked").unlink(missing_ok=True)

    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, out + err
    assert "transform      │ ok" in out
    rest, _ = launched.communicate(timeout=300)
    assert launched.returncode == 0, "".join(seen) + rest
    with psycopg.connect(database_url) as conn:
        first_done = conn.execute(
            "select max(written_at) from consent.consent_change_files"
        ).fetchone()[0]
        catalog_loaded = conn.execute(
            "select finished_at from consent.ingest_batches "
            "where source = 'catalog' and batch_id = '2024-01-01'"
        ).fetchone()[0]
    launched_id, launched_description, *_, started, _ = _holder(database_url)
    assert launched_description == "Dagster run of job ingest_catalog"
    assert launched_id != run_id
    # it took the lock after the first run's last write (its change feed), and loaded after that
    assert first_done is not None and started > first_done and catalog_loaded > started


def test_a_run_killed_with_kill_9_leaves_the_lock_free_and_the_next_run_proceeds(
    database_url, examples, tmp_path
):
    landing, home = copy_examples(tmp_path, examples)
    env = cli_env(home, landing)
    killed = _start_paused(env, home)
    killed_id = _holder(database_url)[0]
    kill_9(killed)
    (home / "paused-at-locked").unlink()

    # nothing to clean up: the next run takes the lock (it reaches the step after it) ...
    following = _start_paused(env, home)
    try:
        run_id, description, pid, _, finished = _holder(database_url)
        assert run_id != killed_id and (description, pid, finished) == (
            "consent-center run",
            following.pid,
            None,
        )
    finally:
        (home / "paused-at-locked").unlink(missing_ok=True)
    # ... and runs to the end
    out, err = following.communicate(timeout=900)
    assert following.returncode == 0, out + err
    assert "batches loaded │ 5" in out and "transform      │ ok" in out
    assert _holder(database_url)[4] is not None  # released, and recorded as finished
