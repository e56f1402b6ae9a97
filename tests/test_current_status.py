"""golden_consent is right at every moment, not only at the last run (issue 18, point 2).

The worked example, run once at 14:00 on 10 March 2026. Maria's card contract (signed
2023-03-10 14:20 Moscow time, tests/fixtures/README.md) grants marketing calls for 36 months,
so at 14:30 that day, with no run in between, golden_consent already reads `expired` for a
reader at 14:30 (`set consent.now`). Then a run at 14:30 builds golden_consent_at_run, which
must be exactly what the reader saw, and its change feed tells every key the clock moved once.

An installation on the real clock (no CONSENT_NOW) reads at now(); asked at 14:30 on 10 March
2026 through `consent.now`, months before its run, it reads what the pinned one read then.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from pipelines.settings import MOSCOW
from tests.cli_runs import cli_env, latest_metadata
from tests.conftest import EXAMPLES, fresh_database

CONSENT_CENTER = str(Path(sys.executable).parent / "consent-center")
BEFORE = "2026-03-10T14:00:00+03:00"
AFTER = "2026-03-10T14:30:00+03:00"
EXPIRES = datetime(2026, 3, 10, 14, 20, tzinfo=MOSCOW)  # Maria's ads_call, from the fixture
MARIA_CALL = (
    "select g.status, g.valid_from, g.valid_until from consent.golden_consent g "
    "join consent.client_xref x on x.client_id = g.client_id "
    "where x.source = 'crm' and x.source_record_id = 'K-3' "
    "and g.purpose = 'marketing' and g.channel = 'call' and g.partner_code = ''"
)
KEY = "client_id, purpose, channel, partner_code"


def _run(env: dict[str, str]) -> None:
    done = subprocess.run(
        [CONSENT_CENTER, "run"], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _rows(conn: psycopg.Connection, relation: str) -> Counter:
    """The relation's rows as a multiset (basis_event_ids, an array, as a tuple)."""
    return Counter(
        tuple(tuple(v) if isinstance(v, list) else v for v in row)
        for row in conn.execute(f"select * from consent.{relation}").fetchall()
    )


def _read_at(conn: psycopg.Connection, instant: str | None) -> None:
    if instant is None:
        conn.execute("reset consent.now")
    else:
        conn.execute("select set_config('consent.now', %s, false)", (instant,))


@pytest.fixture(scope="module")
def installation(server_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("current-status")
    landing = root / "landing"
    shutil.copytree(EXAMPLES, landing)
    seen: dict = {}
    with fresh_database(server_url) as url:
        env = cli_env(root / "home", landing, url)
        with psycopg.connect(url, autocommit=True) as conn:
            _run({**env, "CONSENT_NOW": BEFORE})
            seen["at_run"] = _rows(conn, "golden_consent_at_run")
            seen["read_unset"] = _rows(conn, "golden_consent")
            seen["maria_unset"] = conn.execute(MARIA_CALL).fetchone()
            _read_at(conn, AFTER)
            seen["read_after"] = _rows(conn, "golden_consent")
            seen["maria_after"] = conn.execute(MARIA_CALL).fetchone()
            seen["history_after"] = Counter(
                conn.execute(
                    f"select {KEY}, status, valid_from from consent.consent_history "
                    "where valid_from <= %(t)s and (valid_to is null or valid_to > %(t)s)",
                    {"t": AFTER},
                ).fetchall()
            )
            _read_at(conn, None)
            (seen["last_change"],) = conn.execute(
                "select coalesce(max(change_id), 0) from consent.consent_change"
            ).fetchone()
            _run({**env, "CONSENT_NOW": AFTER})
            seen["rebuilt_at_run"] = _rows(conn, "golden_consent_at_run")
            seen["changes"] = conn.execute(
                f"select {KEY}, old_status, new_status from consent.consent_change "
                "where change_id > %s",
                (seen["last_change"],),
            ).fetchall()
            seen["metadata"] = latest_metadata(
                root / "home" / "dagster", ("consent", "consent_change")
            )
            seen["before_statuses"] = {row[:4]: row[4] for row in seen["at_run"]}
            seen["after_statuses"] = {row[:4]: row[4] for row in seen["read_after"]}
        yield seen


@pytest.fixture(scope="module")
def real_clock(server_url, tmp_path_factory):
    """The worked example run on the real clock: CONSENT_NOW unset."""
    root = tmp_path_factory.mktemp("real-clock")
    landing = root / "landing"
    shutil.copytree(EXAMPLES, landing)
    with fresh_database(server_url) as url:
        env = cli_env(root / "home", landing, url)
        env.pop("CONSENT_NOW")
        _run(env)
        with psycopg.connect(url, autocommit=True) as conn:
            (as_of,) = conn.execute(
                "select as_of from consent.publication order by published_at desc limit 1"
            ).fetchone()
            seen = {"as_of": as_of, "at_run": _rows(conn, "golden_consent_at_run")}
            seen["read_now"] = _rows(conn, "golden_consent")
            _read_at(conn, AFTER)
            seen["read_after"] = _rows(conn, "golden_consent")
        yield seen


def test_a_consent_that_ran_out_after_the_run_reads_expired_with_no_run_in_between(installation):
    status, _, valid_until = installation["maria_unset"]
    assert (status, valid_until) == ("granted", EXPIRES)
    assert installation["maria_after"] == ("expired", EXPIRES, None)


def test_a_pinned_installation_reads_at_its_runs_instant_unless_the_reader_sets_one(installation):
    assert sum(installation["at_run"].values()) > 0
    assert installation["read_unset"] == installation["at_run"]
    assert installation["read_after"] != installation["at_run"]


def test_what_the_reader_saw_at_1430_is_exactly_what_a_run_at_1430_builds(installation):
    assert installation["rebuilt_at_run"] == installation["read_after"]


def test_every_key_reads_the_history_interval_that_contains_the_readers_instant(installation):
    read = Counter(row[:6] for row in installation["read_after"])
    assert read == installation["history_after"]


def test_the_next_runs_feed_tells_each_key_the_clock_moved_exactly_once(installation):
    before, after = installation["before_statuses"], installation["after_statuses"]
    moved = {
        (*key, before.get(key, "none"), after.get(key, "none"))
        for key in before.keys() | after.keys()
        if before.get(key, "none") != after.get(key, "none")
    }
    assert any(change[1:3] == ("marketing", "call") for change in moved)
    assert sorted(installation["changes"]) == sorted(moved)


def test_dagster_shows_how_many_changes_and_clients_the_run_published(installation):
    feed = installation["metadata"]["consent/consent_change"]
    clients = {change[0] for change in installation["changes"]}
    assert feed["changes"] == len(installation["changes"]) > 0
    assert feed["clients_changed"] == len(clients)


def test_the_real_clock_reads_at_now_and_any_instant_the_reader_sets(installation, real_clock):
    assert real_clock["as_of"] > datetime(2026, 3, 10, 14, 30, tzinfo=MOSCOW)
    # seconds after the run nothing has moved: now() reads the run's rows
    assert real_clock["read_now"] == real_clock["at_run"]
    # months before its run, it reads what the installation pinned at 14:30 read
    assert real_clock["read_after"] == installation["read_after"]
