"""Rule 7: a changed matrix re-derives every affected client, previewed before it applies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import psycopg
import pytest

from pipelines.catalog_preview import preview_catalog
from pipelines.dbt_cli import run_dbt
from tests.conftest import EXAMPLE_XREF, EXAMPLES, fresh_database, load_and_stage


@pytest.fixture(scope="module")
def derived(server_url):
    with fresh_database(server_url) as url:
        load_and_stage(url, EXAMPLES)
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(
                "insert into consent.client_xref (source, source_record_id, client_id) "
                "values (%s, %s, %s)",
                EXAMPLE_XREF,
            )
        run_dbt(url, "run", "--select", "intermediate", "marts")
        yield url


def test_shortening_a_matrix_term_shows_who_loses_what_before_it_applies(derived, tmp_path):
    candidate = tmp_path / "2025-01-01"
    shutil.copytree(EXAMPLES / "catalog" / "2024-01-01", candidate)
    matrix = candidate / "product_matrix.csv"
    # the card's processing consent now lasts 12 months instead of 120
    matrix.write_text(
        matrix.read_text(encoding="utf-8").replace(
            "M1,product_type,CARD,pd_basic,1,120", "M1,product_type,CARD,pd_basic,1,12"
        ),
        encoding="utf-8",
    )
    with psycopg.connect(derived) as conn:
        before = conn.execute("select count(*) from consent.golden_consent").fetchone()[0]

    preview = preview_catalog(derived, candidate, tmp_path / "reports")

    # Maria's card granted processing until 2033; with 12 months it ran out in 2024.
    # Viktor's processing comes from his loan (rule M4), which did not change.
    assert preview.clients_affected == 1
    assert preview.changes == {
        f"processing/{channel}: granted -> expired": 1
        for channel in ("call", "email", "messenger", "post", "push", "sms")
    }
    lines = preview.diff_file.read_text().splitlines()
    assert lines[0] == "client_id,purpose,channel,partner_code,status_now,status_after,effect"
    assert len(lines) == 7
    assert all(
        line.startswith("C-MARIA,processing,") and line.endswith(",loses") for line in lines[1:]
    )
    with psycopg.connect(derived) as conn:
        # production is untouched and the preview batch is gone
        assert conn.execute("select count(*) from consent.golden_consent").fetchone()[0] == before
        assert (
            conn.execute(
                "select count(*) from raw.catalog_product_matrix where _batch_id like 'preview-%'"
            ).fetchone()[0]
            == 0
        )


# a folder name that, spliced into SQL, would end the statement and drop a table
INJECTION = "2025-01-01'; drop table public.canary; select '"


def _canary(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table if not exists public.canary (id int)")


def _canary_alive_and_nothing_loaded(url: str) -> None:
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('public.canary')").fetchone()[0] is not None
        assert (
            conn.execute(
                "select count(*) from consent.ingest_batches where batch_id like 'preview-%'"
            ).fetchone()[0]
            == 0
        )


def test_a_catalog_folder_named_like_sql_is_refused_in_one_line_before_anything_runs(
    derived, tmp_path
):
    candidate = tmp_path / INJECTION
    shutil.copytree(EXAMPLES / "catalog" / "2024-01-01", candidate)
    _canary(derived)
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": derived,
        "CONSENT_HOME": str(tmp_path / "home"),
        "COLUMNS": "80",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "catalog-preview", str(candidate)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    output = (done.stdout + done.stderr).strip()
    assert len(output.splitlines()) == 1, output
    assert "is not a batch id" in output
    assert "Traceback" not in output
    _canary_alive_and_nothing_loaded(derived)
    assert not (tmp_path / "home" / "reports").exists() or not any(
        (tmp_path / "home" / "reports").iterdir()
    )


def test_dbt_refuses_a_catalog_batch_var_that_is_not_a_batch_id(derived):
    """The macro does not trust its caller: the var is validated before it reaches SQL."""
    _canary(derived)
    variables = json.dumps({"catalog_batch_id": f"preview-{INJECTION}"})
    with pytest.raises(RuntimeError, match="catalog_batch_id is not a batch id"):
        run_dbt(derived, "run", "--select", "int_catalog__consent_types", "--vars", variables)
    _canary_alive_and_nothing_loaded(derived)
