"""Publishing (DESIGN section 12): a run's generation becomes what readers see in one transaction.

Each story builds generations the way a run does (dbt with the var `build_generation`, identity
written into the generation) and publishes them with pipelines.publication: the change feed says
each status change once, readers of consent.* see the last published generation and nothing
else, an unpublished or incomplete generation changes nothing, and the grants hold across
publications.
"""

from __future__ import annotations

import json
import shutil
import uuid

import psycopg
import pytest

from assets.change_feed import write_change_file
from pipelines.dbt_cli import run_dbt
from pipelines.publication import (
    Generation,
    PublicationError,
    prepare_generation,
    publish,
    published_generation,
)
from sources.loader import load_batch
from sources.schema import create_identity_tables
from tests.conftest import EXAMPLE_XREF, EXAMPLES, STORY_CLOCK, fresh_database, load_and_stage

XREF = [*EXAMPLE_XREF, ("helpdesk", "HD-11", "C-MARIA")]
GOLDEN = [
    ("C-MARIA", "Соколова", "Мария", "1988-11-02", 4),
    ("C-VIKTOR", "Ким", "Виктор", "1975-04-19", 3),
]
LETTER = (
    "HD-11,2025-03-03T09:00:00,revoke_consent,Соколова М.А.,1988-11-02,+79035551234,,,,"
    "marketing,email,https://scans.example.ru/letters/HD-11.pdf,\n"
)
MARIA_EMAIL = "select status from consent.golden_consent where client_id = 'C-MARIA' and " + (
    "purpose = 'marketing' and channel = 'email' and partner_code = ''"
)


def derive(url: str) -> Generation:
    """What a run does before it publishes: identity into a new generation, then the models."""
    generation = Generation.of_run(str(uuid.uuid4()))
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        prepare_generation(conn, generation)
        create_identity_tables(conn, generation.consent)
        # identity resolution is not run here: the golden clients are written as it would
        cur.executemany(
            f"insert into {generation.consent}.client_xref (source, source_record_id, client_id) "
            "values (%s, %s, %s)",
            XREF,
        )
        cur.executemany(
            f"insert into {generation.consent}.golden_client (client_id, last_name, first_name, "
            "birth_date, source_record_count) values (%s, %s, %s, %s, %s)",
            GOLDEN,
        )
        variables = generation.dbt_vars(conn)  # this generation's identity, written above
    # at a fixed instant: Maria's e-mail consent (2024) expires in 2027
    run_dbt(
        url,
        "run",
        "--select",
        "staging",  # typed once per batch: a run stages the new batches first
        "intermediate",
        "marts",
        "--vars",
        json.dumps(variables),
        as_of=STORY_CLOCK,
    )
    return generation


def add_letter(conn: psycopg.Connection, landing) -> None:
    """Maria writes to stop e-mails; the letter arrives in a new batch."""
    header = (EXAMPLES / "helpdesk" / "2024-06-03" / "tickets.csv").read_text().splitlines()[0]
    folder = landing / "helpdesk" / "2025-03-04"
    folder.mkdir()
    (folder / "tickets.csv").write_text(header + "\n" + LETTER, encoding="utf-8")
    (folder / "_SUCCESS").touch()
    load_batch(conn, "helpdesk", folder)


def schemas(conn: psycopg.Connection) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "select nspname from pg_namespace where nspname ~ '^(staging|consent)__g'"
        )
    }


@pytest.fixture(scope="module")
def database(server_url, tmp_path_factory):
    landing = tmp_path_factory.mktemp("publish") / "landing"
    shutil.copytree(EXAMPLES, landing)
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn:
            yield {"url": url, "conn": conn, "landing": landing}


@pytest.fixture(scope="module")
def first(database):
    """The first publication of the worked example."""
    generation = derive(database["url"])
    return generation, publish(database["conn"], generation)


def test_the_feed_publishes_every_status_change_once_with_growing_ids(database, first, tmp_path):
    conn = database["conn"]
    generation, done = first
    # the first publication: every key, from 'none'
    assert done.changes > 0 and done.last_change_id - done.first_change_id + 1 == done.changes
    assert conn.execute(
        "select count(*), bool_and(old_status = 'none') from consent.consent_change "
        "where change_id <= %s",
        (done.last_change_id,),
    ).fetchone() == (done.changes, True)
    assert done.changes == conn.execute("select count(*) from consent.golden_consent").fetchone()[0]

    # a run with nothing new: a new generation, no change, the previous generation dropped
    again = derive(database["url"])
    repeat = publish(conn, again)
    assert repeat.changes == 0 and repeat.first_change_id is None
    assert generation.consent not in schemas(conn)  # retired by this or an earlier one
    assert schemas(conn) == {again.staging, again.consent}

    add_letter(conn, database["landing"])
    latest = derive(database["url"])
    assert conn.execute(MARIA_EMAIL).fetchone() == ("granted",)  # built, not yet published
    letter = publish(conn, latest)
    assert conn.execute(MARIA_EMAIL).fetchone() == ("revoked",)
    assert (
        letter.changes == 1
        and letter.first_change_id == letter.last_change_id > done.last_change_id
    )
    change = conn.execute(
        "select client_id, purpose, channel, old_status, new_status, allowed "
        "from consent.consent_change where change_id = %s",
        (letter.last_change_id,),
    ).fetchone()
    assert change == ("C-MARIA", "marketing", "email", "granted", "revoked", False)
    # every published name shows the latest generation, and the history agrees with the golden
    assert conn.execute(
        "select status from consent.consent_status_at('C-MARIA', 'marketing', 'email', '', %s)",
        (STORY_CLOCK,),
    ).fetchone() == ("revoked",)
    assert (
        conn.execute(
            "select count(*) from consent.consent_event where source_record_id = 'HD-11'"
        ).fetchone()[0]
        > 0
    )

    path = write_change_file(conn, tmp_path, letter.first_change_id, letter.last_change_id)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(row["change_id"], row["new_status"]) for row in lines] == [
        (letter.last_change_id, "revoked")
    ]


def test_an_unpublished_or_incomplete_generation_changes_nothing_readers_see(database, first):
    conn = database["conn"]
    before_generation = published_generation(conn)
    before = conn.execute("select count(*), max(change_id) from consent.consent_change").fetchone()
    golden = conn.execute("select * from consent.golden_consent order by 1, 2, 3, 4").fetchall()

    # a run whose report failed: its generation lacks a consent model
    broken = derive(database["url"])
    conn.execute(f"drop table {broken.consent}.report_expiring")
    with pytest.raises(PublicationError, match="report_expiring"):
        publish(conn, broken)
    assert published_generation(conn) == before_generation
    assert (
        conn.execute("select count(*), max(change_id) from consent.consent_change").fetchone()
        == before
    )
    assert (
        conn.execute("select * from consent.golden_consent order by 1, 2, 3, 4").fetchall()
        == golden
    )
    # the next publication retires the failed run's leftovers with the previous generation
    good = derive(database["url"])
    done = publish(conn, good)
    assert broken.consent in done.retired and broken.staging in done.retired
    assert schemas(conn) == {good.staging, good.consent}


def test_a_run_that_did_not_resolve_identity_publishes_the_identity_it_was_derived_from(
    database, first
):
    conn = database["conn"]
    generation = derive(database["url"])
    conn.execute(f"drop table {generation.consent}.golden_client")  # as if identity never ran
    done = publish(conn, generation)
    assert done.identity_taken_over == ["golden_client"]
    assert conn.execute("select count(*) from consent.golden_client").fetchone() == (2,)


def test_analysts_never_see_personal_data_and_marketing_sees_only_its_tables(database, first):
    conn = database["conn"]
    publish(conn, derive(database["url"]))  # a second publication: the grants must hold on
    with conn.transaction():
        conn.execute("set local role consent_analyst")
        # two golden clients in the worked example, their ids readable (not their names)
        assert conn.execute(
            "select count(client_id), sum(source_record_count) from consent.golden_client"
        ).fetchone() == (2, 7)
        assert conn.execute("select count(*) from consent.consent_history").fetchone()[0] > 0
        assert conn.execute(
            "select status from consent.consent_status_at('C-VIKTOR', 'processing', 'call', '', "
            "%s)",
            (STORY_CLOCK,),
        ).fetchone() == ("granted",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("select last_name from consent.golden_client")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("select count(*) from raw.crm_clients")
        generation = published_generation(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            # the generation's own tables are the owner's: readers go through consent.*
            conn.execute(f"select last_name from {generation.consent}.golden_client")
    with conn.transaction():
        conn.execute("set local role consent_marketing")
        assert conn.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("select count(*) from consent.consent_event")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(
                "select * from consent.consent_status_at('C-VIKTOR', 'processing', 'call', '', "
                "now())"
            )
    with conn.transaction():
        conn.execute("set local role consent_dpo")
        assert conn.execute("select count(*) from raw.crm_clients").fetchone()[0] == 3
