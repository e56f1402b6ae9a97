"""Every dbt unit test passes: each model's logic on the fixtures its YAML gives it.

Production runs leave the unit tests out (`dbt build --exclude resource_type:unit_test`, as
dbt advises: they test the models' code, which does not change from one run to the next, while
the data tests stay in every run as its quality gate). They run here, in a whole `dbt build`
over the worked example's feeds: dbt reads each model's inputs' columns from the database, so
the inputs must exist.
"""

from __future__ import annotations

import json
import re

import psycopg

from pipelines.dbt_cli import run_dbt
from pipelines.settings import DBT_PROJECT_DIR
from sources.loader import load_landing_zone
from sources.schema import ensure_schema
from tests.conftest import EXAMPLES, STORY_CLOCK


def _unit_tests_declared() -> set[str]:
    """`model::test` for every unit test in the project's manifest (parsed by the build)."""
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    return {f"{test['model']}::{test['name']}" for test in manifest["unit_tests"].values()}


def test_every_dbt_unit_test_passes_in_a_whole_build(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_schema(conn)  # raw, identity and calendar tables
        load_landing_zone(conn, EXAMPLES)
    # the data tests are every run's (the calendar they need is the pipeline's)
    done = run_dbt(database_url, "build", "--exclude", "resource_type:test", as_of=STORY_CLOCK)
    passed = set(re.findall(r" PASS (\S+::\S+)\s", done.stdout))
    # every one ran and passed (a unit test dbt skipped would be missing here)
    assert passed == _unit_tests_declared() and len(passed) >= 20, done.stdout[-2000:]
