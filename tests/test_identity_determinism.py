"""The published identity state is a function of the input, not of the runs (DESIGN section 12).

Generated feeds of a size whose identity resolution keeps some record pairs apart with a doubt
(consent.identity_ambiguous_matches) while one side revokes, so that consent_event honours
that revocation for the other side's client too (`possible_match_revocation_honoured`).

* default: `consent-center run`, then `consent-center run` again with nothing new. Before the
  fix, the second run scored no pair (nothing was new), published no ambiguous pair and
  consent_event lost every revocation honoured across a possible match. Now the tables are
  identical (EXCEPT ALL both ways), and the run wrote no passport or phone under reports/.
* slow: runs killed with SIGKILL during identity resolution, then a complete run, compared
  with the uninterrupted run, client ids compared through their records.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from benchmarks.published_state import except_all, snapshot
from sources.generator import GeneratorConfig, generate
from tests.cli_runs import cli_env, run_cli, start_run_in_own_group
from tests.conftest import fresh_database
from tests.test_identity_reports import files_with, personal_values

#: 2,000 clients, seed 1: seven pairs kept apart with a doubt, revocations among their records
CLIENTS, SEED = 2_000, 1

TABLES = (
    "client_xref",
    "golden_client",
    "identity_ambiguous_matches",
    "consent_event",
    "golden_consent",
)
POSSIBLE_MATCH = "doubt_reason like '%possible_match_revocation_honoured%'"


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("determinism")
    generate(root / "landing", GeneratorConfig(clients=CLIENTS, seed=SEED))
    return root / "landing"


@pytest.fixture(scope="module")
def two_runs(server_url, landing, tmp_path_factory):
    home = tmp_path_factory.mktemp("determinism-home")
    with fresh_database(server_url) as url:
        env = cli_env(home, landing, url)
        run_cli(env)
        with psycopg.connect(url, autocommit=True) as conn:
            first = snapshot(conn, "first_run", TABLES)
            honoured = conn.execute(
                f"select count(*) from first_run.consent_event where {POSSIBLE_MATCH}"
            ).fetchone()[0]
        run_cli(env)
        with psycopg.connect(url, autocommit=True) as conn:
            second = snapshot(conn, "second_run", TABLES)
            yield {
                "conn": conn,
                "url": url,
                "home": home,
                "first": first,
                "second": second,
                "honoured": honoured,
            }


def test_the_feeds_give_revocations_honoured_across_possible_matches(two_runs):
    conn = two_runs["conn"]
    assert two_runs["first"]["identity_ambiguous_matches"] > 0
    apart = conn.execute(
        "select count(*) from first_run.identity_ambiguous_matches where not same_client"
    ).fetchone()[0]
    assert apart > 0
    assert two_runs["honoured"] > 0


@pytest.mark.parametrize("table", TABLES)
def test_a_second_run_with_nothing_new_changes_nothing(two_runs, table):
    assert two_runs["first"][table] > 0
    assert two_runs["second"][table] == two_runs["first"][table]
    assert except_all(two_runs["conn"], "first_run", "second_run", table) == (0, 0)


def test_the_second_run_still_honours_revocations_across_possible_matches(two_runs):
    again = (
        two_runs["conn"]
        .execute(f"select count(*) from second_run.consent_event where {POSSIBLE_MATCH}")
        .fetchone()[0]
    )
    assert again == two_runs["honoured"] > 0


def test_the_run_writes_no_passport_or_phone_under_reports(two_runs, landing):
    values = personal_values(landing)
    assert len(values) > 1000
    assert files_with(two_runs["home"] / "reports", values) == {}


# --- kill -9 during identity, then a complete run --------------------------------------------
_CLIENT_ID = re.compile(r"C-[0-9a-f]{20}")
# facts of the run, not of the input: when a batch was loaded into this database, when an
# erasure was carried out here
WALL_CLOCK = {"loaded_at", "executed_at", "reapplied_at"}
# an erased client's pseudonym is random by design (irreversible): compared as "a pseudonym"
_PSEUDONYM = re.compile(r"Anon[0-9]{32}")


def by_records(
    conn: psycopg.Connection, table: str, leave_out: frozenset[str] = frozenset()
) -> Counter:
    """The table's rows with every client id replaced by its client's smallest record key.

    `leave_out`: columns not compared besides the wall-clock ones (a hash of a client id, which
    no replacement can reach)."""
    key = dict(
        conn.execute(
            "select client_id, min(source || '|' || source_record_id) "
            "from consent.client_xref group by client_id"
        ).fetchall()
    )

    def swap(value):
        if isinstance(value, str):
            value = _PSEUDONYM.sub("Anon<pseudonym>", value)
            return _CLIENT_ID.sub(lambda m: key.get(m.group(0), "?" + m.group(0)), value)
        if isinstance(value, list):
            return tuple(swap(v) for v in value)
        if isinstance(value, dict):  # jsonb: hashable, in key order
            return tuple(sorted(((k, swap(v)) for k, v in value.items()), key=lambda kv: kv[0]))
        return value

    cur = conn.execute(f"select * from consent.{table}")
    # loaded_at is when a batch was loaded into this database: a fact of the run, not the input
    keep = [i for i, col in enumerate(cur.description) if col.name not in WALL_CLOCK | leave_out]
    return Counter(tuple(swap(row[i]) for i in keep) for row in cur.fetchall())


def kill_during_identity(env: dict, server_url: str, dbname: str, rng: random.Random) -> str:
    """Start a run; once identity resolution has read its inputs (its connection's last query
    reads the previous ambiguous pairs) or is writing, SIGKILL the run's whole process group."""
    proc = start_run_in_own_group(env)
    seen = None
    deadline = time.monotonic() + 900
    with psycopg.connect(server_url, autocommit=True) as admin:
        while proc.poll() is None and time.monotonic() < deadline:
            (seen,) = admin.execute(
                "select count(*) > 0 from pg_stat_activity where datname = %s and ("
                "query ilike '%%from consent.identity_ambiguous_matches%%' "
                "or query ilike 'truncate consent.client_xref%%')",
                (dbname,),
            ).fetchone()
            if seen:
                break
            time.sleep(0.02)
    if proc.poll() is None:
        time.sleep(rng.uniform(0, 1.5))
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return "killed during identity" if seen and proc.returncode == -9 else "not killed"


@pytest.mark.slow
def test_runs_killed_during_identity_then_completed_publish_the_uninterrupted_state(
    two_runs, server_url, landing, tmp_path_factory
):
    from psycopg.conninfo import conninfo_to_dict

    rng = random.Random(16)
    with psycopg.connect(two_runs["url"], autocommit=True) as conn:
        reference = {t: by_records(conn, t) for t in TABLES}
    home = tmp_path_factory.mktemp("killed-home")
    with fresh_database(server_url) as url:
        env = cli_env(home, landing, url)
        dbname = conninfo_to_dict(url)["dbname"]
        kills = [kill_during_identity(env, server_url, dbname, rng) for _ in range(2)]
        assert kills[0] == "killed during identity"
        run_cli(env)
        with psycopg.connect(url, autocommit=True) as conn:
            resumed = {t: by_records(conn, t) for t in TABLES}
    for table in TABLES:
        assert sum(reference[table].values()) > 0
        missing = reference[table] - resumed[table]
        extra = resumed[table] - reference[table]
        assert (sum(missing.values()), sum(extra.values())) == (0, 0), table
