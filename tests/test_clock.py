"""The clock: CONSENT_NOW is the instant every "current" answer is computed at, and
golden_consent is right at every moment, not only at the last run (issue 18, point 2).

Two whole `consent-center run`s of the worked example on the same data, minutes apart on
either side of an expiry worked by hand from tests/fixtures/README.md: Maria's card contract
(signed 2023-03-10 14:20 Moscow time) grants marketing calls for 36 months, so calls are
allowed until 2026-03-10 14:20.
- `can-contact` without --at answers at CONSENT_NOW, whatever instant the golden table was last
  built at. A malformed CONSENT_NOW is one line and exit 1, and a malformed dbt var `as_of` is
  refused before any SQL is run.
- After the run at 14:00, with no run in between, golden_consent already reads `expired` for a
  reader at 14:30 (`set consent.now`). The run at 14:30 then builds golden_consent_at_run,
  which must be exactly what the reader saw, and its change feed tells every key the clock
  moved once.
- An installation on the real clock (no CONSENT_NOW) reads at now(); asked at 14:30 on 10 March
  2026 through `consent.now`, months before its run, it reads what the pinned one read then.

Both are observed on the same two runs (they were two test files that each made them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pipelines.dbt_cli import run_dbt
from pipelines.settings import MOSCOW, ClockError, load_settings, parse_clock
from tests.cli_runs import latest_metadata
from tests.conftest import EXAMPLES, fresh_database

CONSENT_CENTER = str(Path(sys.executable).parent / "consent-center")
EXPIRES = datetime(2026, 3, 10, 14, 20, tzinfo=MOSCOW)  # Maria's ads_call, from the fixture
BEFORE = "2026-03-10T14:00:00"  # naive: Moscow time
AFTER = "2026-03-10T14:30:00+03:00"
MARIA_CALL = (
    "select g.status, g.valid_from, g.valid_until from consent.golden_consent g "
    "join consent.client_xref x on x.client_id = g.client_id "
    "where x.source = 'crm' and x.source_record_id = 'K-3' "
    "and g.purpose = 'marketing' and g.channel = 'call' and g.partner_code = ''"
)
KEY = "client_id, purpose, channel, partner_code"


def _cli(
    *args: str, env: dict[str, str], timeout: int = 300, clock: str | None = "pinned"
) -> subprocess.CompletedProcess:
    """`consent-center <args>`; with clock=None, on the real clock (CONSENT_NOW removed)."""
    full = {**os.environ, **env, "COLUMNS": "200"}
    if clock is None:
        full.pop("CONSENT_NOW", None)
    return subprocess.run(
        [CONSENT_CENTER, *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _can_contact(env: dict[str, str], now: str) -> dict:
    done = _cli(
        "can-contact",
        *("--source", "crm", "--record", "K-3", "--purpose", "marketing", "--channel", "call"),
        "--json",
        env={**env, "CONSENT_NOW": now},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


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


def _latest_metadata(dagster_home: Path) -> dict[str, str]:
    """The as_of of the last materialisation of golden_consent and of the digest."""
    keys = (("consent", "golden_consent"), ("reports", "email_digest"))
    found = latest_metadata(dagster_home, *keys)
    return {key: metadata["as_of"] for key, metadata in found.items()}


@pytest.fixture(scope="module")
def runs(server_url, tmp_path_factory):
    """Run at BEFORE, read, run again at AFTER on the same data, read: every observation kept."""
    root = tmp_path_factory.mktemp("clock")
    landing = root / "landing"
    shutil.copytree(EXAMPLES, landing)
    dagster_home = root / "home" / "dagster"
    seen: dict = {}
    with fresh_database(server_url) as url:
        env = {
            "CONSENT_DATABASE_URL": url,
            "CONSENT_HOME": str(root / "home"),
            "CONSENT_LANDING_DIR": str(landing),
        }
        seen["env"] = env
        with psycopg.connect(url, autocommit=True) as conn:
            for name, now in (("before", BEFORE), ("after", AFTER)):
                if name == "after":
                    (last_change,) = conn.execute(
                        "select coalesce(max(change_id), 0) from consent.consent_change"
                    ).fetchone()
                done = _cli("run", env={**env, "CONSENT_NOW": now}, timeout=900)
                assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
                seen[f"{name}_stdout"] = done.stdout
                seen[f"{name}_golden"] = conn.execute(MARIA_CALL).fetchone()
                seen[f"{name}_at_run"] = _rows(conn, "golden_consent_at_run")
                seen[f"{name}_staged_as_of"] = conn.execute(
                    "select as_of from staging.stg_run__as_of"
                ).fetchone()[0]
                seen[f"{name}_metadata"] = _latest_metadata(dagster_home)
                seen[f"{name}_written"] = {
                    key: metadata.get("rows_written")
                    for key, metadata in latest_metadata(
                        dagster_home,
                        ("staging", "stg_helpdesk__tickets"),
                        ("consent", "report_expiring"),
                    ).items()
                }
                (seen[f"{name}_derivation"],) = latest_metadata(
                    dagster_home, ("consent", "golden_consent_at_run")
                ).values()
                seen[f"{name}_counts"] = conn.execute(
                    "select (select count(*) from staging.stg_helpdesk__tickets), "
                    "(select count(*) from consent.report_expiring)"
                ).fetchone()
                seen[f"{name}_answers"] = {at: _can_contact(env, at) for at in (BEFORE, AFTER)}
                if name == "before":
                    # between the runs, as a reader: unset (the run's instant), then at 14:30
                    seen["read_unset"] = _rows(conn, "golden_consent")
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
                else:
                    seen["changes"] = conn.execute(
                        f"select {KEY}, old_status, new_status from consent.consent_change "
                        "where change_id > %s",
                        (last_change,),
                    ).fetchall()
                    seen["feed_metadata"] = latest_metadata(
                        dagster_home, ("consent", "consent_change")
                    )
        seen["before_statuses"] = {row[:4]: row[4] for row in seen["before_at_run"]}
        seen["after_statuses"] = {row[:4]: row[4] for row in seen["read_after"]}
        yield seen


@pytest.fixture(scope="module")
def real_clock(server_url, tmp_path_factory):
    """The worked example run on the real clock: CONSENT_NOW unset."""
    root = tmp_path_factory.mktemp("real-clock")
    landing = root / "landing"
    shutil.copytree(EXAMPLES, landing)
    with fresh_database(server_url) as url:
        env = {
            "CONSENT_DATABASE_URL": url,
            "CONSENT_HOME": str(root / "home"),
            "CONSENT_LANDING_DIR": str(landing),
        }
        done = _cli("run", env=env, timeout=900, clock=None)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with psycopg.connect(url, autocommit=True) as conn:
            (as_of,) = conn.execute(
                "select as_of from consent.publication order by published_at desc limit 1"
            ).fetchone()
            seen = {"as_of": as_of, "at_run": _rows(conn, "golden_consent_at_run")}
            seen["read_now"] = _rows(conn, "golden_consent")
            _read_at(conn, AFTER)
            seen["read_after"] = _rows(conn, "golden_consent")
        yield seen


def test_the_same_key_is_granted_before_its_expiry_and_expired_after_it(runs):
    assert runs["before_golden"][::2] == ("granted", EXPIRES)
    status, _, valid_until = runs["after_golden"]
    assert status == "expired" and valid_until is None


def test_each_run_states_its_instant_in_the_summary_and_in_staging(runs):
    assert runs["before_staged_as_of"] == datetime(2026, 3, 10, 14, 0, tzinfo=MOSCOW)
    assert runs["after_staged_as_of"] == datetime(2026, 3, 10, 14, 30, tzinfo=MOSCOW)
    assert "2026-03-10T14:00:00+03:00" in runs["before_stdout"]
    assert "2026-03-10T14:30:00+03:00" in runs["after_stdout"]
    # and in Dagster: the golden table's materialisation and the digest's
    assert runs["before_metadata"] == dict.fromkeys(
        ("consent/golden_consent", "reports/email_digest"), "2026-03-10T14:00:00+03:00"
    )
    assert runs["after_metadata"] == dict.fromkeys(
        ("consent/golden_consent", "reports/email_digest"), "2026-03-10T14:30:00+03:00"
    )


def test_each_model_says_how_many_rows_its_build_wrote_and_old_batches_are_not_staged_again(
    runs,
):
    tickets, expiring = runs["before_counts"]
    assert tickets > 0 and runs["before_written"] == {
        "staging/stg_helpdesk__tickets": tickets,
        "consent/report_expiring": expiring,
    }
    # the same batches again: staging takes in nothing, a table is written whole
    assert runs["after_written"] == {
        "staging/stg_helpdesk__tickets": 0,
        "consent/report_expiring": runs["after_counts"][1],
    }


def test_the_second_run_derives_only_the_clients_whose_status_the_clock_moved(runs):
    """Nothing new arrived between the runs: the second derives the clients with an interval,
    a grant or the end of a grant between 14:00 and 14:30 (Maria, her call consent ending at
    14:20), and every materialisation says so."""
    before, after = runs["before_derivation"], runs["after_derivation"]
    assert before["derivation"] == "full" and "affected_clients" not in before
    assert after["derivation"] == "incremental"
    assert after["affected_clients_by_cause"] == {"clock": after["affected_clients"]}
    assert after["affected_clients"] == 1  # Maria: Viktor's consents did not move
    assert runs["after_golden"][0] == "expired"


def test_can_contact_without_at_answers_at_consent_now_whatever_the_last_build(runs):
    for built in ("before", "after"):
        answers = runs[f"{built}_answers"]
        early, late = answers[BEFORE], answers[AFTER]
        assert (early["allowed"], early["status"]) == (True, "granted")
        assert early["at"] == "2026-03-10T14:00:00+03:00"
        assert early["valid_to"] == EXPIRES.isoformat()
        assert (late["allowed"], late["status"]) == (False, "expired")
        assert late["at"] == "2026-03-10T14:30:00+03:00"
        assert late["valid_from"] == EXPIRES.isoformat()


@pytest.mark.parametrize("command", [["run"], ["can-contact", "--source", "crm", "--record",
                                               "K-3", "--purpose", "marketing", "--channel",
                                               "call"]])  # fmt: skip
def test_a_malformed_consent_now_is_one_line_and_exit_1(runs, command):
    done = _cli(*command, env={**runs["env"], "CONSENT_NOW": "next tuesday"})
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "CONSENT_NOW 'next tuesday' is not an ISO 8601 instant" in line


def test_an_instant_without_a_zone_is_moscow_time_and_a_date_is_its_midnight(monkeypatch):
    assert parse_clock("2026-03-01") == datetime(2026, 3, 1, tzinfo=MOSCOW)
    assert parse_clock("2026-03-01T12:00Z") == datetime(2026, 3, 1, 15, tzinfo=MOSCOW)
    monkeypatch.setenv("CONSENT_NOW", "2028-02-29T23:59:59")
    settings = load_settings()
    assert settings.now() == datetime(2028, 2, 29, 23, 59, 59, tzinfo=MOSCOW)
    assert settings.now().utcoffset() == timedelta(hours=3)
    monkeypatch.setenv("CONSENT_NOW", "2028-02-30T00:00:00")
    with pytest.raises(ClockError, match="not an ISO 8601 instant"):
        load_settings()


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-01'::timestamptz; drop table consent.golden_consent; --",
        "2026-02-30T00:00:00",
        "yesterday",
    ],
)
def test_dbt_refuses_an_as_of_that_is_not_an_instant_before_running_any_sql(database_url, value):
    with pytest.raises(RuntimeError, match="var as_of") as failure:
        run_dbt(
            database_url,
            "run",
            "--select",
            "stg_run__as_of",
            "--vars",
            json.dumps({"as_of": value}),
        )
    assert "Compilation Error" in str(failure.value)
    with psycopg.connect(database_url) as conn:
        built = conn.execute("select to_regclass('staging.stg_run__as_of')").fetchone()[0]
    assert built is None


# --- what a reader sees between runs ---------------------------------------------------


def test_a_consent_that_ran_out_after_the_run_reads_expired_with_no_run_in_between(runs):
    status, _, valid_until = runs["before_golden"]
    assert (status, valid_until) == ("granted", EXPIRES)
    assert runs["maria_after"] == ("expired", EXPIRES, None)


def test_a_pinned_installation_reads_at_its_runs_instant_unless_the_reader_sets_one(runs):
    assert sum(runs["before_at_run"].values()) > 0
    assert runs["read_unset"] == runs["before_at_run"]
    assert runs["read_after"] != runs["before_at_run"]


def test_what_the_reader_saw_at_1430_is_exactly_what_a_run_at_1430_builds(runs):
    assert runs["after_at_run"] == runs["read_after"]


def test_every_key_reads_the_history_interval_that_contains_the_readers_instant(runs):
    read = Counter(row[:6] for row in runs["read_after"])
    assert read == runs["history_after"]


def test_the_next_runs_feed_tells_each_key_the_clock_moved_exactly_once(runs):
    before, after = runs["before_statuses"], runs["after_statuses"]
    moved = {
        (*key, before.get(key, "none"), after.get(key, "none"))
        for key in before.keys() | after.keys()
        if before.get(key, "none") != after.get(key, "none")
    }
    assert any(change[1:3] == ("marketing", "call") for change in moved)
    assert sorted(runs["changes"]) == sorted(moved)


def test_dagster_shows_how_many_changes_and_clients_the_run_published(runs):
    feed = runs["feed_metadata"]["consent/consent_change"]
    clients = {change[0] for change in runs["changes"]}
    assert feed["changes"] == len(runs["changes"]) > 0
    assert feed["clients_changed"] == len(clients)


def test_the_real_clock_reads_at_now_and_any_instant_the_reader_sets(runs, real_clock):
    assert real_clock["as_of"] > datetime(2026, 3, 10, 14, 30, tzinfo=MOSCOW)
    # seconds after the run nothing has moved: now() reads the run's rows
    assert real_clock["read_now"] == real_clock["at_run"]
    # months before its run, it reads what the installation pinned at 14:30 read
    assert real_clock["read_after"] == runs["read_after"]
