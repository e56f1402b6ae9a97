"""Staging normalisation, checked on the worked example after a real `dbt build`."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest

from tests.conftest import EXAMPLES, fresh_database, load_and_stage


@pytest.fixture(scope="module")
def staged(server_url) -> psycopg.Connection:
    with fresh_database(server_url) as url:
        load_and_stage(url, EXAMPLES)
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


def _one(conn, query: str):
    return conn.execute(query).fetchone()


def test_phones_written_three_ways_become_one_e164_number(staged):
    rows = staged.execute(
        """
        select source, phone, phone_e164 from staging.stg_crm__clients where crm_client_id = 'K-2'
        union all select source, phone, phone_e164 from staging.stg_helpdesk__tickets
        union all select source, phone, phone_e164 from staging.stg_partner__clients
        order by 1
        """
    ).fetchall()
    assert rows == [
        ("crm", "89035550011", "+79035550011"),
        ("helpdesk", "8 903 555 00 11", "+79035550011"),
        ("partner", "+7 903 555-00-11", "+79035550011"),
    ]


def test_names_are_folded_for_matching_while_the_original_is_kept(staged):
    assert _one(
        staged,
        "select last_name, last_name_norm, first_name_norm, middle_name "
        "from staging.stg_crm__clients where crm_client_id = 'K-3'",
    ) == ("СОКОЛОВА", "соколова", "мария", None)
    assert _one(staged, "select fio, fio_norm from staging.stg_helpdesk__tickets") == (
        "Ким В.",
        "ким в.",
    )


def test_emails_passports_and_dates_are_typed_and_normalised(staged):
    email, passport, birth = _one(
        staged,
        "select email, passport_digits, birth_date from staging.stg_crm__clients "
        "where crm_client_id = 'K-3'",
    )
    assert email == "m.sokolova@example.ru"  # was M.Sokolova@example.ru
    assert passport is None and birth == date(1988, 11, 2)
    assert _one(
        staged, "select passport_digits from staging.stg_crm__clients where crm_client_id = 'K-1'"
    ) == ("4612345678",)


def test_naive_timestamps_are_moscow_time(staged):
    (received,) = _one(staged, "select received_at from staging.stg_helpdesk__tickets")
    assert received == datetime(2024, 6, 3, 7, 42, tzinfo=UTC)  # 10:42 in Moscow


def test_scopes_become_code_lists_and_flags_booleans(staged):
    assert _one(
        staged, "select scope_purposes, scope_channels from staging.stg_helpdesk__tickets"
    ) == (["marketing"], ["all"])
    assert staged.execute(
        "select crm_client_id, flag_value from staging.stg_crm__consent_flags order by 1"
    ).fetchall() == [("K-1", True), ("K-2", False)]


def test_only_the_newest_catalog_batch_is_current(staged):
    assert _one(
        staged,
        "select bool_and(is_current_snapshot), count(*) from staging.stg_catalog__product_matrix",
    ) == (True, 4)
