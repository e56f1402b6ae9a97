"""Crash at scale (slow): runs killed with SIGKILL at random points publish the same state.

20,000 generated clients. One installation runs `consent-center run` uninterrupted, then again
with nothing new (which must change nothing). Another is killed with SIGKILL (its whole
process group: CLI, Dagster, dbt) at five random instants of its runs, then runs to
completion. Every published table must be the same multiset of rows in both (EXCEPT ALL both
ways), client ids compared through their records: identity, events, history, the golden table
and the reports.

Run it with `pytest -m slow tests/test_crash_determinism.py` (about 20-30 minutes on 2 cores).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import psycopg
import pytest

from sources.generator import GeneratorConfig, generate
from tests.cli_runs import cli_env, run_cli, start_run_in_own_group
from tests.conftest import fresh_database
from tests.test_identity_determinism import by_records

CLIENTS, SEED, KILLS = 20_000, 11, 5
TABLES = (
    "client_xref",
    "golden_client",
    "identity_ambiguous_matches",
    "consent_event",
    "consent_history",
    "golden_consent",
    "report_expiring",
    "report_conflicts",
    "report_revocation_deadlines",
    "report_depersonalisation",
)

pytestmark = pytest.mark.slow


def published(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        return {table: by_records(conn, table) for table in TABLES}


def differences(one: dict, other: dict) -> dict[str, tuple[int, int]]:
    """Per table: rows of `one` missing from `other`, and rows of `other` not in `one`."""
    found = {}
    for table in TABLES:
        missing = sum((one[table] - other[table]).values())
        extra = sum((other[table] - one[table]).values())
        if missing or extra:
            found[table] = (missing, extra)
    return found


def kill_after(env: dict, seconds: float) -> int | None:
    """Start a run and SIGKILL its process group after `seconds`; its exit code if it ended."""
    proc = start_run_in_own_group(env)
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        return None


def test_five_kills_then_a_complete_run_publish_what_one_uninterrupted_run_does(
    server_url, tmp_path_factory
):
    root = tmp_path_factory.mktemp("crash")
    landing = root / "landing"
    generate(landing, GeneratorConfig(clients=CLIENTS, seed=SEED))
    rng = random.Random(SEED)

    with fresh_database(server_url) as url:
        env = cli_env(root / "home-reference", landing, url)
        started = time.monotonic()
        run_cli(env)
        duration = time.monotonic() - started
        reference = published(url)
        run_cli(env)  # nothing new
        assert differences(reference, published(url)) == {}, "a run with nothing new changed it"
    for table in TABLES:
        assert sum(reference[table].values()) > 0, f"{table} is empty: nothing was compared"

    with fresh_database(server_url) as url:
        env = cli_env(root / "home-killed", landing, url)
        instants = sorted(rng.uniform(0.05, 0.6) * duration for _ in range(KILLS))
        outcomes = [kill_after(env, seconds) for seconds in instants]
        print(f"reference run {duration:.0f} s; kills after {[round(s) for s in instants]} s")
        assert outcomes.count(None) >= KILLS - 1, "the runs ended before they could be killed"
        run_cli(env)
        assert differences(reference, published(url)) == {}
