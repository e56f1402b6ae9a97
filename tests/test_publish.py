"""Publishing: the change feed other systems read, and who may read what in the database."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest

from assets.access import apply_grants
from assets.change_feed import publish_changes, write_change_file
from pipelines.dbt_cli import run_dbt
from sources.loader import load_batch
from tests.conftest import EXAMPLE_XREF, EXAMPLES, STORY_CLOCK, fresh_database, load_and_stage

XREF = [*EXAMPLE_XREF, ("helpdesk", "HD-11", "C-MARIA")]
LETTER = (
    "HD-11,2025-03-03T09:00:00,revoke_consent,Соколова М.А.,1988-11-02,+79035551234,,,,"
    "marketing,email,https://scans.example.ru/letters/HD-11.pdf,\n"
)


@pytest.fixture(scope="module")
def published(server_url, tmp_path_factory):
    landing = tmp_path_factory.mktemp("publish") / "landing"
    shutil.copytree(EXAMPLES, landing)
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(
                "insert into consent.client_xref (source, source_record_id, client_id) "
                "values (%s, %s, %s)",
                XREF,
            )
            # identity resolution is not run here: the golden clients are written as it would
            cur.executemany(
                "insert into consent.golden_client (client_id, last_name, first_name, birth_date,"
                " source_record_count) values (%s, %s, %s, %s, %s)",
                [
                    ("C-MARIA", "Соколова", "Мария", "1988-11-02", 4),
                    ("C-VIKTOR", "Ким", "Виктор", "1975-04-19", 3),
                ],
            )
        # at a fixed instant: Maria's e-mail consent (2024) expires in 2027
        run_dbt(url, "run", "--select", "intermediate", "marts", as_of=STORY_CLOCK)
        with psycopg.connect(url, autocommit=True) as conn:
            yield {"url": url, "conn": conn, "landing": landing}


def test_the_feed_publishes_every_status_change_once_with_growing_ids(published, tmp_path):
    conn = published["conn"]
    count, _, last = publish_changes(conn)
    current = conn.execute("select count(*) from consent.golden_consent").fetchone()[0]
    assert count == current > 0  # the first publication: every key, from 'none'
    assert publish_changes(conn) == (0, None, None)  # nothing changed, nothing repeated

    # Maria writes to stop e-mails; the letter arrives in a new batch
    header = (EXAMPLES / "helpdesk" / "2024-06-03" / "tickets.csv").read_text().splitlines()[0]
    folder = published["landing"] / "helpdesk" / "2025-03-04"
    folder.mkdir()
    (folder / "tickets.csv").write_text(header + "\n" + LETTER, encoding="utf-8")
    (folder / "_SUCCESS").touch()
    load_batch(conn, "helpdesk", folder)
    run_dbt(published["url"], "run", "--select", "intermediate", "marts", as_of=STORY_CLOCK)

    count, new_first, new_last = publish_changes(conn)
    assert count == 1 and new_first == new_last > last
    change = conn.execute(
        "select client_id, purpose, channel, old_status, new_status, allowed "
        "from consent.consent_change where change_id = %s",
        (new_last,),
    ).fetchone()
    assert change == ("C-MARIA", "marketing", "email", "granted", "revoked", False)

    path = write_change_file(conn, tmp_path, new_first, new_last)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(row["change_id"], row["new_status"]) for row in lines] == [(new_last, "revoked")]


def test_analysts_never_see_personal_data_and_marketing_sees_only_its_tables(published):
    conn = published["conn"]
    apply_grants(conn)
    apply_grants(conn)  # re-applying after a rebuild is safe
    with conn.transaction():
        conn.execute("set local role consent_analyst")
        # two golden clients in the worked example, their ids readable (not their names)
        assert conn.execute(
            "select count(client_id), sum(source_record_count) from consent.golden_client"
        ).fetchone() == (2, 7)
        assert conn.execute("select count(*) from consent.consent_history").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("select last_name from consent.golden_client")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("select count(*) from raw.crm_clients")
    with conn.transaction():
        conn.execute("set local role consent_marketing")
        assert conn.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("select count(*) from consent.consent_event")
    with conn.transaction():
        conn.execute("set local role consent_dpo")
        assert conn.execute("select count(*) from raw.crm_clients").fetchone()[0] == 3
