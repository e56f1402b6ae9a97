"""Typed staging, once per batch: a daily build parses the day's batches and nothing else.

The worked example is loaded and staged; then a helpdesk batch arrives, a CRM batch is loaded
again with other rows, the partner rows look typed by an older parser, and staging is built
again. Old batches' staged rows are never rewritten (their row versions stay the same), a
re-loaded batch is replaced rather than doubled, rows of another parser are typed again, and
every staged table holds exactly what its base view parses from raw at every step.
"""

from __future__ import annotations

import shutil

import psycopg
import pytest
from psycopg import sql

from assets.depersonalisation import staged_tables
from pipelines.dbt_cli import run_dbt
from sources.loader import load_batch
from sources.phones import refresh_phone_numbers
from tests.conftest import EXAMPLES, fresh_database, load_and_stage
from tests.landing_batches import csv_text, write_batch
from tests.staged_tables import staged_versus_base

TICKET_HEADER = [
    "ticket_id", "received_at", "request_type", "fio", "birth_date", "phone", "email",
    "passport", "contract_number", "scope_purposes", "scope_channels", "letter_scan_url",
    "closed_at",
]  # fmt: skip


def row_versions(conn: psycopg.Connection, table: str, batch: str) -> set[tuple]:
    """The physical row versions (ctid, xmin) of a batch's staged rows: a rewrite changes them."""
    return set(
        conn.execute(
            sql.SQL("select ctid::text, xmin::text from staging.{} where batch_id = %s").format(
                sql.Identifier(table)
            ),
            (batch,),
        ).fetchall()
    )


@pytest.fixture(scope="module")
def days(server_url, tmp_path_factory):
    """Observations after the first staging and after the second day's staging."""
    landing = tmp_path_factory.mktemp("staging-batches") / "landing"
    shutil.copytree(EXAMPLES, landing)
    seen: dict = {}
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn:
            seen["first"] = staged_versus_base(conn)
            seen["web_before"] = row_versions(conn, "stg_web__events", "2024-06-02")
            seen["crm_before"] = row_versions(conn, "stg_crm__clients", "2024-06-01")
            seen["helpdesk_before"] = row_versions(conn, "stg_helpdesk__tickets", "2024-06-03")

            # day 2: a revocation letter arrives, and the CRM batch is sent again with one
            # client fewer and no contracts (the file has its header only)
            letter = {
                "ticket_id": "HD-NEW", "received_at": "2024-06-10T09:00:00",
                "request_type": "revoke_consent", "fio": "Ким В.", "phone": "8 903 555 00 11",
                "contract_number": "KR-2024-0007", "scope_purposes": "marketing",
                "scope_channels": "all",
            }  # fmt: skip
            new = write_batch(
                landing,
                "helpdesk",
                "2024-06-10",
                {"tickets.csv": csv_text([letter], TICKET_HEADER)},
            )
            crm = landing / "crm" / "2024-06-01"
            clients = (crm / "clients.csv").read_text().splitlines(keepends=True)
            seen["crm_lines"] = len(clients) - 1
            (crm / "clients.csv").write_text("".join(clients[:-1]))
            contracts = crm / "contracts.csv"
            contracts.write_text(contracts.read_text().splitlines(keepends=True)[0])
            load_batch(conn, "helpdesk", new)
            load_batch(conn, "crm", crm)
            refresh_phone_numbers(conn)
            # the partner batch as an older version of the product typed it: another parser
            # fingerprint, and a value that parser read otherwise
            conn.execute(
                "update staging.stg_partner__clients set parsed_by = 'older-parser', "
                "last_name_norm = upper(last_name_norm)"
            )
        run_dbt(url, "build", "--select", "staging")
        with psycopg.connect(url, autocommit=True) as conn:
            seen["second"] = staged_versus_base(conn)
            seen["web_after"] = row_versions(conn, "stg_web__events", "2024-06-02")
            seen["helpdesk_after"] = row_versions(conn, "stg_helpdesk__tickets", "2024-06-03")
            seen["crm_after"] = row_versions(conn, "stg_crm__clients", "2024-06-01")
            seen["new_letter"] = conn.execute(
                "select ticket_id, request_type, scope_purposes from staging.stg_helpdesk__tickets "
                "where batch_id = '2024-06-10'"
            ).fetchall()
            seen["crm_rows"] = conn.execute(
                "select count(*) from staging.stg_crm__clients where batch_id = '2024-06-01'"
            ).fetchone()[0]
            seen["partner_parsers"] = conn.execute(
                "select distinct parsed_by from staging.stg_partner__clients"
            ).fetchall()
            seen["contracts"] = conn.execute(
                "select count(*) from staging.stg_crm__contracts"
            ).fetchone()[0]
            seen["loaded_at_matches"] = conn.execute(
                "select bool_and(s.batch_loaded_at = i.finished_at) "
                "from staging.stg_crm__clients s join consent.ingest_batches i "
                "on i.source = 'crm' and i.batch_id = s.batch_id"
            ).fetchone()[0]
        yield seen


def test_every_staged_table_holds_exactly_what_its_base_view_parses(days):
    assert len(days["first"]) == 7
    assert days["first"] == dict.fromkeys(days["first"], (0, 0))
    assert days["second"] == dict.fromkeys(days["second"], (0, 0))


def test_batches_staged_before_are_not_parsed_again(days):
    assert days["web_before"] and days["web_after"] == days["web_before"]
    assert days["helpdesk_before"] and days["helpdesk_after"] == days["helpdesk_before"]


def test_rows_an_older_parser_typed_are_typed_again(days):
    # the second build found another fingerprint on the partner rows and staged them anew
    ((parser,),) = days["partner_parsers"]
    assert parser != "older-parser" and len(parser) == 12
    assert days["second"]["stg_partner__clients"] == (0, 0)


def test_the_new_letter_is_staged_typed(days):
    assert days["new_letter"] == [("HD-NEW", "revoke_consent", ["marketing"])]


def test_a_batch_loaded_again_replaces_its_staged_rows_and_keeps_none_of_the_old(days):
    assert days["crm_rows"] == days["crm_lines"] - 1
    assert days["crm_after"].isdisjoint(days["crm_before"])
    assert days["contracts"] == 0  # gone from the batch, gone from staging
    assert days["loaded_at_matches"] is True


def test_every_per_batch_raw_table_has_its_base_view_and_staged_table():
    raw = {
        "crm_clients", "crm_contracts", "crm_consent_flags", "web_events",
        "web_event_consents", "helpdesk_tickets", "partner_clients",
    }  # fmt: skip
    pairs = staged_tables()
    assert set(pairs) == raw
    for table, (base, staged) in pairs.items():
        source, entity = table.split("_", 1)
        assert (base, staged) == (f"base_{source}__{entity}", f"stg_{source}__{entity}")
