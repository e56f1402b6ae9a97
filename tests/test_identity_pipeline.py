"""Identity resolution wired into the pipeline (issue 4): staging -> splink -> consent tables.

The worked example (tests/fixtures/landing) is loaded and staged once per module with a real
`dbt build --select staging`; resolution reads the staging views and writes client_xref,
golden_client and identity_ambiguous_matches back, as the Dagster asset does.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance, build_asset_check_context, materialize

from assets.identity import io as identity_io
from assets.identity.assets import (
    identity_accuracy,
    identity_resolution,
    run_identity_resolution,
    run_training,
    train_identity_model,
)
from assets.identity.training import DEFAULT_MODEL_PATH, load_model_and_meta, scale_prior
from pipelines.dbt_cli import run_dbt
from pipelines.resources import ConsentCenterResource
from sources.landing import all_complete_batches
from sources.loader import load_batch
from sources.phones import refresh_phone_numbers
from sources.schema import ensure_schema
from tests.cli_runs import KILL, kill_9, start_paused
from tests.conftest import EXAMPLES, fresh_database

MARIA = [("crm", "K-1"), ("crm", "K-3"), ("web", "ACC-501")]
VIKTOR = [("crm", "K-2"), ("helpdesk", "HD-10"), ("partner", "BETA:B-77")]

STAGED_PEOPLE = """
select source, source_record_id from staging.stg_crm__clients
union select source, source_record_id from staging.stg_web__events
union select source, source_record_id from staging.stg_helpdesk__tickets
union select source, source_record_id from staging.stg_partner__clients
"""


def _load_and_stage_examples(url: str) -> None:
    """The worked example loaded batch by batch, its phones, then its staging views."""
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        for batch in all_complete_batches(EXAMPLES):
            load_batch(conn, batch.source, batch.path)
        refresh_phone_numbers(conn)
    # the dbt beside this interpreter, as the product runs it (PATH may not hold it)
    run_dbt(url, "build", "--select", "staging", timeout=600)


@pytest.fixture(scope="module")
def staged_url(server_url):
    with fresh_database(server_url) as url:
        _load_and_stage_examples(url)
        yield url


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("identity-home")


@pytest.fixture(scope="module")
def resource(staged_url, home) -> ConsentCenterResource:
    return ConsentCenterResource(
        home=str(home), landing_dir=str(home / "landing"), database_url=staged_url
    )


@pytest.fixture(scope="module")
def first_run(resource, staged_url):
    result = run_identity_resolution(resource)
    with psycopg.connect(staged_url) as conn:
        xref = _xref(conn)
    return result, xref


def _xref(conn) -> dict[tuple[str, str], str]:
    rows = conn.execute("select source, source_record_id, client_id from consent.client_xref")
    return {(s, r): c for s, r, c in rows}


def test_the_frame_is_one_row_per_person_record_with_contracts(staged_url):
    with psycopg.connect(staged_url) as conn:
        records = identity_io.read_records(conn).set_index(["source", "source_record_id"])
    assert sorted(records.index) == sorted(MARIA + VIKTOR)
    assert records.loc[("crm", "K-1"), "contract_numbers"] == ["CARD-2023-0001", "DEP-2020-0042"]
    assert records.loc[("helpdesk", "HD-10"), "contract_numbers"] == ["KR-2024-0007"]
    assert records.loc[("web", "ACC-501"), "contract_numbers"] == []
    assert records.loc[("helpdesk", "HD-10"), "fio"] == "ким в."
    k3 = records.loc[("crm", "K-3")]
    assert (k3["last_name"], k3["last_name_orig"]) == ("соколова", "СОКОЛОВА")
    assert k3["birth_date"] == "1988-11-02" and k3["email"] == "m.sokolova@example.ru"
    assert str(records.loc[("web", "ACC-501"), "updated_at"]) == "2024-06-02 05:00:00+00:00"


def test_the_two_people_of_the_worked_example_are_two_clients(first_run):
    _, xref = first_run
    maria = {xref[key] for key in MARIA}
    viktor = {xref[key] for key in VIKTOR}
    assert len(maria) == 1 and len(viktor) == 1
    assert maria != viktor


def test_every_staged_person_record_is_in_client_xref_exactly_once(first_run, staged_url):
    with psycopg.connect(staged_url) as conn:
        staged = set(conn.execute(STAGED_PEOPLE).fetchall())
        rows = conn.execute("select source, source_record_id from consent.client_xref").fetchall()
    assert len(rows) == len(set(rows))
    assert set(rows) == staged


def test_a_second_run_keeps_the_client_ids(first_run, resource, staged_url):
    _, before = first_run
    result = run_identity_resolution(resource, charts=False)
    with psycopg.connect(staged_url) as conn:
        after = _xref(conn)
    assert after == before
    assert result["kept_ids"] == len(before)
    # nothing changed since this run: the next one scores nothing and keeps every pair
    again = run_identity_resolution(resource, charts=False)
    assert again["stats"]["scored_records"] == 0 and again["stats"]["scored_pairs"] == 0
    assert (
        again["stats"]["pairs_kept"]
        == result["stats"]["pairs_kept"] + result["stats"]["scored_pairs"]
    )


def test_golden_clients_carry_the_best_known_fields(first_run, staged_url):
    _, xref = first_run
    with psycopg.connect(staged_url) as conn:
        rows = conn.execute(
            "select client_id, last_name, first_name, middle_name, birth_date, phone, email, "
            "source_record_count, updated_at is not null from consent.golden_client"
        ).fetchall()
    golden = {r[0]: r[1:] for r in rows}
    assert len(golden) == 2
    assert golden[xref[("crm", "K-1")]] == (
        "Соколова",  # CRM wins; the original spelling, not the capitals of K-3
        "Мария",
        "Андреевна",
        date(1988, 11, 2),
        "+79035551234",
        "m.sokolova@example.ru",
        3,
        True,
    )
    assert golden[xref[("crm", "K-2")]] == (
        "Ким",
        "Виктор",
        "Олегович",  # CRM has none: the partner's
        date(1975, 4, 19),
        "+79035550011",
        "kim.v@example.com",
        3,
        True,
    )


def test_charts_are_written_as_html(first_run, home):
    result, _ = first_run
    names = {Path(p).name for p in result["charts"]}
    assert {"match_weights.html", "m_u_parameters.html"} <= names
    assert all((home / "reports" / "identity" / name).exists() for name in names)


def test_a_failed_write_leaves_the_previous_state(first_run, staged_url, monkeypatch):
    with psycopg.connect(staged_url, autocommit=True) as conn:
        before = _xref(conn)
        calls = []

        def failing_copy(conn_, table, df):
            calls.append(table)
            if table == "consent.identity_ambiguous_matches":
                raise RuntimeError("disk full")
            real_copy(conn_, table, df)

        real_copy = identity_io._copy_in
        monkeypatch.setattr(identity_io, "_copy_in", failing_copy)
        xref = pd.DataFrame(
            {"source": ["crm"], "source_record_id": ["X"], "client_id": ["C-x"]}
        ).assign(match_probability=1.0, record_hash="h")
        ambiguous = pd.DataFrame({"source_l": ["crm"], "same_client": [False]})
        with pytest.raises(RuntimeError):
            identity_io.write_results(conn, xref, pd.DataFrame(), ambiguous)
        assert "consent.client_xref" in calls
        assert _xref(conn) == before
        assert conn.execute("select count(*) from consent.golden_client").fetchone()[0] == 2


CHILD = """
import sys
from assets.identity import io as identity_io
from assets.identity.assets import run_identity_resolution
from pipelines.resources import ConsentCenterResource, pause_point

real_copy = identity_io._copy_in


def copy_then_pause(conn, table, df):
    real_copy(conn, table, df)
    if table == "consent.client_xref":  # copied in, golden_client and the pairs not yet
        pause_point("identity_xref_copied")


identity_io._copy_in = copy_then_pause
url, home = sys.argv[1], sys.argv[2]
resource = ConsentCenterResource(home=home, landing_dir=home + "/landing", database_url=url)
run_identity_resolution(resource, charts=False)
"""


def _identity_state(conn) -> tuple:
    """Who is with whom (record sets per client) and each golden client's fields, by records."""
    members: dict[str, set] = {}
    for key, client in _xref(conn).items():
        members.setdefault(client, set()).add(key)
    golden = {
        frozenset(members[row[0]]): row[1:]
        for row in conn.execute(
            "select client_id, last_name, first_name, middle_name, birth_date, phone, email, "
            "source_record_count from consent.golden_client"
        )
    }
    pairs = conn.execute("select count(*) from consent.identity_ambiguous_matches").fetchone()[0]
    return frozenset(frozenset(m) for m in members.values()), golden, pairs


def test_a_resolution_killed_with_sigkill_mid_write_leaves_nothing_and_the_rerun_completes(
    first_run, staged_url, server_url, tmp_path
):
    """A real crash: the resolving process is killed (SIGKILL) after client_xref was copied in,
    inside the write's transaction; the identity tables keep their state (here: empty, a new
    installation), and the next resolution publishes what an uninterrupted one does."""
    import os
    import sys

    with fresh_database(server_url) as url:
        _load_and_stage_examples(url)
        home = tmp_path / "home"
        child, marker = start_paused(
            [sys.executable, "-c", CHILD, url, str(home)],
            {**os.environ, "CONSENT_HOME": str(home)},
            home,
            "identity_xref_copied",
            timeout=300,
            what="the resolution never reached its write",
        )
        kill_9(child)
        assert child.returncode == -KILL
        marker.unlink()
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("select count(*) from consent.client_xref").fetchone()[0] == 0
            assert conn.execute("select count(*) from consent.golden_client").fetchone()[0] == 0

        resource = ConsentCenterResource(
            home=str(home), landing_dir=str(home / "landing"), database_url=url
        )
        run_identity_resolution(resource, charts=False)
        with psycopg.connect(url, autocommit=True) as conn:
            resumed = _identity_state(conn)
    with psycopg.connect(staged_url) as conn:
        uninterrupted = _identity_state(conn)
    assert resumed == uninterrupted
    people, golden, _ = resumed
    assert people == {frozenset(MARIA), frozenset(VIKTOR)} and len(golden) == 2


def test_the_prior_is_rescaled_to_the_data_size():
    model, meta = load_model_and_meta(DEFAULT_MODEL_PATH)
    assert meta["trained_records"] > 0
    prior = model["probability_two_random_records_match"]
    assert scale_prior(dict(model), meta["trained_records"], 10) == (1.0, 0)  # never raised
    scaled = dict(model)
    factor, bucket = scale_prior(scaled, meta["trained_records"], meta["trained_records"] * 10)
    # scaled to the power of two at or above the size, so that it moves only at a doubling
    assert bucket == 1 << (meta["trained_records"] * 10 - 1).bit_length()
    assert bucket // 2 < meta["trained_records"] * 10 <= bucket
    assert factor == pytest.approx(meta["trained_records"] / bucket)
    assert scaled["probability_two_random_records_match"] == pytest.approx(prior * factor)
    same = scale_prior(dict(model), meta["trained_records"], bucket // 2 + 1)
    assert same == (factor, bucket)


def test_dagster_materialises_the_identity_tables_and_checks_accuracy(staged_url, tmp_path):
    landing = tmp_path / "landing"
    (landing / "truth").mkdir(parents=True)
    (landing / "truth" / "person_xref.csv").write_text(
        "source,source_record_id,person_id\n"
        + "".join(f"{s},{r},P1\n" for s, r in MARIA)
        + "".join(f"{s},{r},P2\n" for s, r in VIKTOR),
        encoding="utf-8",
    )
    resource = ConsentCenterResource(
        home=str(tmp_path / "home"), landing_dir=str(landing), database_url=staged_url
    )
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [identity_resolution, identity_accuracy],
            resources={"consent_center": resource},
            instance=instance,
        )
        assert result.success
        keys = {m.asset_key for m in result.get_asset_materialization_events()}
        assert keys == {
            AssetKey(["consent", "client_xref"]),
            AssetKey(["consent", "golden_client"]),
            AssetKey(["consent", "identity_ambiguous_matches"]),
        }
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == "identity_accuracy" and check.passed
        meta = {k: v.value for k, v in check.metadata.items()}
        assert meta["precision"] == 1.0 and meta["recall"] == 1.0 and meta["f1"] == 1.0

        # the train_identity job's asset saves a model under CONSENT_HOME; the next resolution
        # uses it and, the model having changed, re-scores every record (not only new ones)
        trained = materialize(
            [train_identity_model], resources={"consent_center": resource}, instance=instance
        )
        assert trained.success
        assert (tmp_path / "home" / "identity" / "person_model.json").exists()
        again = materialize(
            [identity_resolution],
            resources={"consent_center": resource},
            instance=instance,
        )
        xref_meta = {
            k: v.value
            for m in again.get_asset_materialization_events()
            if m.asset_key == AssetKey(["consent", "client_xref"])
            for k, v in m.materialization.metadata.items()
        }
        assert xref_meta["incremental"] is False and xref_meta["scored_records"] == 6
        assert xref_meta["model"].endswith("home/identity/person_model.json")


def test_the_accuracy_check_passes_without_a_truth_file(resource):
    result = identity_accuracy(context=build_asset_check_context(), consent_center=resource)
    assert result.passed
    assert result.metadata["note"].value == "no truth file"


def test_retraining_saves_a_model_with_its_record_count(resource, tmp_path):
    out = tmp_path / "person_model.json"
    info = run_training(resource, out)
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["consent_center"]["trained_records"] == info["records"] == 6
    assert 0 < saved["probability_two_random_records_match"] < 1


def test_training_is_its_own_job_outside_transform():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    xref = AssetKey(["consent", "client_xref"])
    model = AssetKey(["identity", "person_model"])
    assert AssetKey(["staging", "stg_crm__clients"]) in graph.get(xref).parent_keys
    for part in ("int_consent_event__contracts", "int_consent_event__direct"):
        assert xref in graph.get(AssetKey(["staging", part])).parent_keys
    transform = defs.resolve_job_def("transform").asset_layer.selected_asset_keys
    assert xref in transform and model not in transform
    assert defs.resolve_job_def("train_identity").asset_layer.selected_asset_keys == {model}
