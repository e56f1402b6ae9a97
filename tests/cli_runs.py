"""The product's command line run from tests as a subprocess, as an operator or a scheduler runs it.

Many test files start `consent-center run` (or another command) in an environment of their own,
hold a run at a known step with the test hook CONSENT_TEST_PAUSE_AT
(pipelines.resources.pause_point) and kill it there with SIGKILL. Those steps live here once, so
that every test builds the environment, waits for a paused run and kills it the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import EXAMPLES

#: the console script installed beside this interpreter (the one `pip install` gives operators)
CONSENT_CENTER = str(Path(sys.executable).parent / "consent-center")
#: the same command line through this interpreter (`python -m pipelines.cli`)
PYTHON_CLI = [sys.executable, "-m", "pipelines.cli"]
#: what a kill test sends: no handler, no cleanup, as a crash or an OOM killer does
KILL = signal.SIGKILL


def copy_examples(root: Path, examples: Path = EXAMPLES) -> tuple[Path, Path]:
    """A copy of the worked example's landing zone (`examples`) at `root/landing`, so that a
    test may add batches to it, and the CONSENT_HOME folder beside it, `root/home` (not
    created)."""
    landing = root / "landing"
    shutil.copytree(examples, landing)
    return landing, root / "home"


def cli_env(
    home: Path, landing: Path, url: str | None = None, *, columns: str = "120", **extra: str
) -> dict[str, str]:
    """This process's environment, pointed at an installation: CONSENT_HOME, the landing zone,
    the database (when `url` is given; else whatever the environment names) and a terminal width
    (COLUMNS: the run summary's table is laid out for it), then `extra`. A pause the runner's
    environment may carry (CONSENT_TEST_PAUSE_AT) is dropped: only `start_paused` holds a run."""
    env = {**os.environ, "COLUMNS": columns, "CONSENT_HOME": str(home)}
    env["CONSENT_LANDING_DIR"] = str(landing)
    if url is not None:
        env["CONSENT_DATABASE_URL"] = url
    env.pop("CONSENT_TEST_PAUSE_AT", None)
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m pipelines.cli <args>` (default `run`) to its end; it must succeed (the failure
    message shows the tails of its output)."""
    done = subprocess.run(
        [*PYTHON_CLI, *(args or ("run",))],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def start_run_in_own_group(env: dict[str, str]) -> subprocess.Popen:
    """`python -m pipelines.cli run` in a process group of its own (start_new_session), output
    discarded: `os.killpg(run.pid, KILL)` then kills it whole (CLI, Dagster, dbt)."""
    return subprocess.Popen(
        [*PYTHON_CLI, "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_paused(
    command: list[str],
    env: dict[str, str],
    home: Path,
    step: str,
    *,
    timeout: float,
    what: str,
    poll: float = 0.2,
) -> tuple[subprocess.Popen, Path]:
    """Start `command` with CONSENT_TEST_PAUSE_AT=`step` and wait until it is held there, that
    is until it wrote `home/paused-at-<step>`. Fails with its output if it ends first, and with
    `what` after `timeout` seconds. Returns the process (its output piped, as text) and the
    marker: removing the marker lets it go on."""
    process = subprocess.Popen(
        command,
        env={**env, "CONSENT_TEST_PAUSE_AT": step},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    marker = home / f"paused-at-{step}"
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(poll)
    return process, marker


def kill_9(process: subprocess.Popen) -> None:
    """SIGKILL `process` (kill -9: it cannot clean up) and reap it."""
    process.send_signal(KILL)
    process.communicate(timeout=60)


def latest_metadata(dagster_home: Path, *keys: tuple[str, ...]) -> dict[str, dict]:
    """The metadata of each asset's last materialisation in an installation's Dagster instance
    (`CONSENT_HOME/dagster`), by "schema/name", values unwrapped."""
    from dagster import AssetKey, DagsterInstance

    found = {}
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for key in keys:
            event = instance.get_latest_materialization_event(AssetKey(list(key)))
            found["/".join(key)] = {
                name: getattr(value, "value", value)
                for name, value in event.asset_materialization.metadata.items()
            }
    return found
