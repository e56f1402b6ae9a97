"""The published state is a function of the input, not of how it arrived (DESIGN section 12).

Generated feeds (2,000 clients, seed 1: revocations cross possible identity matches) with four
batches per source. One installation receives them as daily runs do: each run finds the next
batch of every source (and the catalog in force by then) in its landing zone. Another receives
everything at once and runs once. Then the daily installation runs `consent-center run
--rederive`, which derives every client again over the same identity and must publish exactly
what the incremental daily runs did, then `consent-center run --full-refresh`, which re-derives
everything from the loaded batches, identity re-scored from scratch.

The daily runs, the full refresh after them and the single run must all publish the same
state: every published table the same multiset of rows (EXCEPT ALL both ways), client ids
compared through their records (and a conflict's id, a hash of its client's id, left out).
Identity holds it because a pair's score depends on its two records and the model alone
(assets/identity/resolve.py, PairScores), whichever run scored it. The feeds carry no erasure
request (see `without_erasure_requests`: an erasure carried out is never undone, so a late
batch that would have held it cannot).
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from sources.generator import GeneratorConfig, generate
from tests.cli_runs import cli_env, run_cli
from tests.conftest import fresh_database
from tests.test_crash_determinism import TABLES as PUBLISHED_TABLES
from tests.test_identity_determinism import by_records

#: six whole runs (about seven minutes on 2 cores): in the slow tier, beside the crash tests
pytestmark = pytest.mark.slow

CLIENTS, SEED, BATCHES = 2_000, 1, 4
#: every published table but the depersonalisation report (the feeds hold no erasure request)
TABLES = tuple(t for t in PUBLISHED_TABLES if t != "report_depersonalisation")
#: a conflict's id hashes its client's id, which two installations number apart: the rest of
#: the row (client and event ids included) says which conflict it is
LEAVE_OUT = {"report_conflicts": frozenset({"conflict_id"})}


def published(url: str) -> dict[str, Counter]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {t: by_records(conn, t, LEAVE_OUT.get(t, frozenset())) for t in TABLES}


SOURCES = ("crm", "web", "helpdesk", "partner")


def arrivals(landing: Path) -> list[list[Path]]:
    """The batch folders in the order daily runs meet them: run i finds the i-th batch of every
    source, and every catalog batch dated no later than that run's CRM batch (the first catalog
    with the first run)."""
    days: list[list[Path]] = [[] for _ in range(BATCHES)]
    for source in SOURCES:
        folders = sorted(p for p in (landing / source).iterdir() if p.is_dir())
        assert len(folders) == BATCHES, (source, folders)
        for day, folder in zip(days, folders, strict=True):
            day.append(folder)
    crm_dates = [p.name for p in sorted((landing / "crm").iterdir())]
    for catalog in sorted((landing / "catalog").iterdir()):
        day = max([0] + [i for i, date in enumerate(crm_dates) if date <= catalog.name])
        days[day].append(catalog)
    return days


def without_erasure_requests(landing: Path) -> int:
    """Drop the helpdesk's erase_data letters from the feeds; returns how many.

    An erasure is carried out once due and is never undone: a daily run may erase a client
    whose contract (which would have held the erasure for five more years) arrives in a later
    batch, where one run over everything holds it. That difference is the erasure's, by
    design, not the derivation's; this test is about the derivation.
    """
    dropped = 0
    for tickets in sorted(landing.glob("helpdesk/*/tickets.csv")):
        # bytes as Latin-1 (one character per byte): the generator writes some rows in
        # Windows-1251 among UTF-8 ones, as some helpdesk exports do, and they stay as they are
        with open(tickets, newline="", encoding="latin-1") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [r for r in rows[1:] if "erase_data" not in r]
        dropped += len(rows) - len(kept)
        with open(tickets, "w", newline="", encoding="latin-1") as handle:
            csv.writer(handle).writerows(kept)
    return dropped


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batching")
    generate(root / "landing", GeneratorConfig(clients=CLIENTS, seed=SEED, batches=BATCHES))
    shutil.rmtree(root / "landing" / "truth")
    assert without_erasure_requests(root / "landing") > 0
    return root / "landing"


@pytest.fixture(scope="module")
def at_once(server_url, landing, tmp_path_factory) -> dict[str, Counter]:
    home = tmp_path_factory.mktemp("at-once-home")
    with fresh_database(server_url) as url:
        run_cli(cli_env(home, landing, url))
        yield published(url)


@pytest.fixture(scope="module")
def daily(server_url, landing, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("daily")
    zone = root / "landing"
    zone.mkdir()
    with fresh_database(server_url) as url:
        # each day reaches most clients: incremental all the same, so that it is what is tested
        env = cli_env(root / "home", zone, url, CONSENT_FULL_DERIVATION_SHARE="1")
        for day in arrivals(landing):
            for folder in day:
                shutil.copytree(folder, zone / folder.parent.name / folder.name)
            run_cli(env)
        after_daily = published(url)
        with psycopg.connect(url, autocommit=True) as conn:
            derivations = conn.execute(
                "select derivation, derivation_reason from consent.publication "
                "order by published_at"
            ).fetchall()
        run_cli(env, "run", "--rederive")
        rederived = published(url)
        refresh = run_cli(env, "run", "--full-refresh")
        yield {
            "daily": after_daily,
            "derivations": derivations,
            "rederive": rederived,
            "full_refresh": published(url),
            "output": refresh.stdout,
        }


def _differences(one: dict[str, Counter], other: dict[str, Counter]) -> dict[str, tuple]:
    """Per table that differs: (rows only in `one`, rows only in `other`)."""
    return {
        t: (sum((one[t] - other[t]).values()), sum((other[t] - one[t]).values()))
        for t in TABLES
        if one[t] != other[t]
    }


@pytest.mark.parametrize("table", TABLES)
def test_a_full_refresh_after_daily_runs_publishes_what_one_run_over_everything_does(
    daily, at_once, table
):
    assert sum(at_once[table].values()) > 0, f"{table} is empty: the comparison would be vacuous"
    missing = at_once[table] - daily["full_refresh"][table]
    extra = daily["full_refresh"][table] - at_once[table]
    assert (sum(missing.values()), sum(extra.values())) == (0, 0), (
        list(missing.items())[:3],
        list(extra.items())[:3],
    )


def test_four_daily_runs_publish_what_one_run_over_everything_does(daily, at_once):
    assert _differences(daily["daily"], at_once) == {}


def test_a_full_refresh_publishes_what_the_daily_runs_did(daily):
    assert _differences(daily["daily"], daily["full_refresh"]) == {}


def test_deriving_every_client_again_publishes_what_the_daily_runs_did(daily):
    """The derivation's own determinism, identity aside: after the daily runs, `--rederive`
    derives every client again from every batch over the same identity and must publish the
    same rows."""
    assert _differences(daily["daily"], daily["rederive"]) == {}


def test_the_daily_runs_after_the_first_derive_incrementally(daily):
    derivations = [derivation for derivation, _ in daily["derivations"]]
    assert derivations == ["full"] + ["incremental"] * (BATCHES - 1), daily["derivations"]


def test_the_full_refresh_says_it_re_derived_everything(daily):
    assert "full refresh" in daily["output"]
