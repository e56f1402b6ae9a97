"""Shared fixtures: a real PostgreSQL (embedded, or CONSENT_DATABASE_URL) and fresh databases.

Every test that touches the database gets a database of its own, created from scratch, and the
environment points CONSENT_DATABASE_URL at it: the code under test resolves its target exactly
as it does in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from pipelines.database import create_database, ensure_embedded_server, stop_embedded_server
from pipelines.settings import CLOCK_ENV, MOSCOW, Settings, consent_now

# The clock. Every "current" answer of the product is computed at CONSENT_NOW (else the real
# now), so the tests pin it: unless the environment sets CONSENT_NOW (e.g.
# `CONSENT_NOW=2031-01-01T00:00:00+03:00 make test`), the whole session runs at TEST_CLOCK. Set
# here, at import, so that module-level dates, session and module fixtures and every subprocess
# (dbt, the CLI) see it. Tests are robust to any CONSENT_NOW: a test whose data is relative to
# "now" reads `clock()`; a story on fixed-date data whose answers depend on the instant
# (e.g. a consent that expires in 2027) pins its own, STORY_CLOCK, through run_dbt(as_of=...) or
# monkeypatch.setenv(CONSENT_NOW, ...), overriding the environment's.
TEST_CLOCK = "2026-06-01T12:00:00+03:00"
if not os.environ.get(CLOCK_ENV, "").strip():
    os.environ[CLOCK_ENV] = TEST_CLOCK
# Parallel workers (pytest-xdist, `make test` runs one per core): each has a dbt target folder of
# its own, so that two dbt invocations never write one partial-parse file or run_results.json at
# once. The project's manifest (dbt_project/target/manifest.json, read by the Dagster
# definitions) stays shared: assets/transform.py parses it under a lock.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and not os.environ.get("DBT_TARGET_PATH"):
    from pipelines.settings import DBT_PROJECT_DIR

    os.environ["DBT_TARGET_PATH"] = str(DBT_PROJECT_DIR / "target" / f"pytest-{_WORKER}")
    os.environ["DBT_LOG_PATH"] = str(DBT_PROJECT_DIR / "logs" / f"pytest-{_WORKER}")
# the instant of the stories on the worked example's fixed 2024-2025 data
STORY_CLOCK = datetime(2026, 6, 1, 12, 0, tzinfo=MOSCOW)


def clock() -> datetime:
    """The instant this test session runs at (CONSENT_NOW), as the product reads it."""
    return consent_now()


# the worked example: a hand-written landing zone the tests own (see tests/fixtures/README.md)
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "landing"

_EXTERNAL_URL = os.environ.get("CONSENT_DATABASE_URL")

# who is who in the worked example (for tests about derivation, not identity resolution)
EXAMPLE_XREF = [
    ("crm", "K-1", "C-MARIA"),
    ("crm", "K-3", "C-MARIA"),
    ("web", "ACC-501", "C-MARIA"),
    ("crm", "K-2", "C-VIKTOR"),
    ("helpdesk", "HD-10", "C-VIKTOR"),
    ("partner", "BETA:B-77", "C-VIKTOR"),
]


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """Admin URL of the server the tests use; an embedded one is started and stopped here.

    Its data folder is not under pytest's tmp_path: pytest resets that tree to mode 0700 when
    another session starts, and the server runs as its own system user when tests run as root.
    """
    if _EXTERNAL_URL:
        yield _EXTERNAL_URL
        return
    home = Path(tempfile.mkdtemp(prefix="consent-test-pg-"))
    settings = Settings(home=home, landing_dir=home / "landing", database_url=None)
    url = ensure_embedded_server(settings)
    yield url
    stop_embedded_server(settings)
    shutil.rmtree(home, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo(**params)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create a database of its own on the test server; drop it afterwards."""
    name = f"cc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        create_database(admin, name)
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def database_url(server_url, monkeypatch, tmp_path) -> Iterator[str]:
    """A brand-new database for this test; CONSENT_HOME and CONSENT_DATABASE_URL point at it."""
    with fresh_database(server_url) as url:
        monkeypatch.setenv("CONSENT_DATABASE_URL", url)
        monkeypatch.setenv("CONSENT_HOME", str(tmp_path / "home"))
        yield url


def load_and_stage(url: str, landing: Path, select: str = "staging") -> None:
    """Load a landing zone into `url` and build the dbt staging views on it."""
    from pipelines.dbt_cli import run_dbt
    from sources.loader import load_landing_zone
    from sources.phones import refresh_phone_numbers
    from sources.schema import ensure_schema

    with psycopg.connect(url, autocommit=True) as connection:
        ensure_schema(connection)
        load_landing_zone(connection, landing)
        refresh_phone_numbers(connection)
    run_dbt(url, "build", "--select", select)


@pytest.fixture
def conn(database_url) -> Iterator[psycopg.Connection]:
    from sources.schema import ensure_schema

    with psycopg.connect(database_url, autocommit=True) as connection:
        ensure_schema(connection)
        yield connection


@pytest.fixture
def examples() -> Path:
    if not EXAMPLES.exists():
        pytest.fail(f"the worked-example landing zone is missing: {EXAMPLES}")
    return EXAMPLES


# The test files whose fixtures or tests run the whole pipeline several times, heaviest first
# (seconds on 2 cores, from the suite's --durations). pytest-xdist gives each worker a file at a
# time in collection order (`--dist loadfile`): started first, the long files run side by side
# while the short ones fill the gaps, instead of one long file running alone at the end. The
# order within each file, and among the other files, stays pytest-randomly's.
HEAVY_FIRST = (
    "test_consistent_publishing",
    "test_sample_data_guard",
    "test_api",
    "test_cli",
    "test_identity_determinism",
    "test_change_feed_files",
    "test_clock",
    "test_run_lock",
    "test_access_logins",
    "test_fresh_install",
    "test_generated_feeds",
    "test_depersonalisation",
    "test_cli_answers",
    "test_consent_stories",
    "test_stop_means_stop_stories",
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: random otherwise
