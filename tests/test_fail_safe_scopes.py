"""Fail safe (DESIGN rule 4, section 12 "stop means stop"): a doubtful revocation revokes more,
never less.

* A helpdesk letter's scope is read axis by axis. A code that cannot be read widens its own
  axis (purposes or channels) to all; the other axis keeps what the letter says; a plain variant
  ('E-mail', 'Third_party_transfer') is read as the code it is; each case is reported.
* A partner's refusal and its channel restriction cross a possible identity match (a pair
  splink scored between its review thresholds and kept apart) like every other revocation.

One small landing zone (the worked example's catalog, four CRM clients with a card and their
ticks, one web consent, three letters, one partner record); identity is given, as splink would
write it, and dbt builds the consent models once for the module.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from assets.calendar import write_calendar
from pipelines.answers import MOSCOW, can_contact
from pipelines.dbt_cli import run_dbt
from sources import crm, helpdesk, partner
from tests.conftest import EXAMPLES, fresh_database, load_and_stage
from tests.landing_batches import csv_text, write_batch

SHARE_BETA_SHA = "853766a40719856022d592ec97e9220714f039bb4427e7187554711aeffbc861"

# who is who (given, as splink would write it): each CRM client has a card, which grants
# processing on every channel and advertising calls; ticks add advertising SMS and e-mails
# (Gleb's SMS only)
XREF = [
    ("crm", "K-21", "C-ANNA"),
    ("helpdesk", "HD-21", "C-ANNA"),
    ("crm", "K-22", "C-BORIS"),
    ("helpdesk", "HD-22", "C-BORIS"),
    ("crm", "K-23", "C-VERA"),
    ("web", "ACC-23", "C-VERA"),
    ("helpdesk", "HD-23", "C-VERA"),
    ("crm", "K-24", "C-GLEB"),
    # the partner's record of someone like Gleb: splink was not sure, so it stays apart
    ("partner", "BETA:B-24", "C-GLEB-BETA"),
]
POSSIBLE_MATCH = ("crm", "K-24", "C-GLEB", "partner", "BETA:B-24", "C-GLEB-BETA", 0.81, False)

LETTERS = [
    # Anna stops everything by SMS, and names one purpose nobody can read
    ("HD-21", "Иванова А.", "marketing;adverts", "sms"),
    # Boris stops everything, but misspells the channel
    ("HD-22", "Петров Б.", "all", "emial"),
    # Vera stops the transfer of her data by e-mail, spelt as people spell it
    ("HD-23", "Сидорова В.", "Third_party_transfer", "E-mail"),
]


def _landing(root: Path) -> None:
    shutil.copytree(EXAMPLES / "catalog", root / "catalog")
    clients = {"K-21": "Иванова", "K-22": "Петров", "K-23": "Сидорова", "K-24": "Глебов"}
    write_batch(
        root,
        "crm",
        "2024-01-15",
        {
            "clients.csv": csv_text(
                header=crm.CLIENTS.column_names,
                rows=[
                    {"crm_client_id": k, "last_name": name, "updated_at": "2024-01-15T00:00:00"}
                    for k, name in clients.items()
                ],
            ),
            "contracts.csv": csv_text(
                header=crm.CONTRACTS.column_names,
                rows=[
                    {
                        "contract_id": f"D-{k}",
                        "crm_client_id": k,
                        "contract_number": f"CARD-2023-{k}",
                        "system_code": "CARDS",
                        "product_type": "CARD",
                        "signed_at": "2023-03-01T10:00:00",
                        "scan_url": f"https://scans.example.ru/CARD-2023-{k}.pdf",
                    }
                    for k in clients
                ],
            ),
            "consent_flags.csv": csv_text(
                header=crm.CONSENT_FLAGS.column_names,
                rows=[
                    {
                        "crm_client_id": k,
                        "flag_code": flag,
                        "value": "true",
                        "set_at": "2024-01-10T10:00:00",
                        "set_by": "operator01",
                    }
                    for k in clients
                    for flag in ("SMS_OK", "MAIL_OK")
                    if (k, flag) != ("K-24", "MAIL_OK")  # Gleb never agreed to e-mails
                ],
            ),
        },
    )
    vera_shares = {
        "event_id": "EV-23",
        "occurred_at": "2024-01-12T10:00:00",
        "event_type": "consent_given",
        "account_id": "ACC-23",
        "person": {"last_name": "Сидорова", "first_name": "Вера", "middle_name": None},
        "consents": [
            {
                "consent_code": "share_beta",
                "granted": True,
                "wording_version": "1",
                "wording_sha256": SHARE_BETA_SHA,
            }
        ],
        "form_id": "profile",
        "confirmation": "sms_code",
        "ip": "203.0.113.9",
        "evidence_url": "https://logs.example.ru/EV-23",
    }
    write_batch(root, "web", "2024-01-20", {"events.jsonl": json.dumps(vera_shares) + "\n"})
    write_batch(
        root,
        "helpdesk",
        "2024-03-01",
        {
            "tickets.csv": csv_text(
                header=helpdesk.TICKETS.column_names,
                rows=[
                    {
                        "ticket_id": ticket,
                        "received_at": "2024-03-01T10:00:00",
                        "request_type": "revoke_consent",
                        "fio": fio,
                        "scope_purposes": purposes,
                        "scope_channels": channels,
                        "letter_scan_url": f"https://scans.example.ru/letters/{ticket}.pdf",
                    }
                    for ticket, fio, purposes, channels in LETTERS
                ],
            )
        },
    )
    beta = {
        "partner_code": "BETA",
        "partner_client_id": "B-24",
        "last_name": "Глебов",
        "valid_until": "2025-02-01T00:00:00",
        "agreement_id": "AG-BETA-1",
        "evidence_url": "https://partners.example.ru/BETA/B-24",
    }
    partner_feed = [
        # the client told the partner: no advertising SMS, and no calls at all
        (
            "2024-02-01",
            {"consent_code": "ads_sms", "granted": "false", "restricted_channels": "call"},
        ),
        # ... and, the next day, agreed to advertising e-mails: a grant never crosses the pair
        ("2024-02-02", {"consent_code": "ads_email", "granted": "true"}),
    ]
    for day, row in partner_feed:
        write_batch(
            root,
            "partner",
            day,
            {
                "partner_clients.csv": csv_text(
                    header=partner.PARTNER_CLIENTS.column_names,
                    rows=[{**beta, **row, "obtained_at": f"{day}T00:00:00"}],
                )
            },
        )


@pytest.fixture(scope="module")
def derived(server_url, tmp_path_factory):
    landing = tmp_path_factory.mktemp("fail-safe") / "landing"
    _landing(landing)
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn:
            write_calendar(conn, 2030)
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into consent.client_xref (source, source_record_id, client_id) "
                    "values (%s, %s, %s)",
                    XREF,
                )
                cur.execute(
                    "insert into consent.identity_ambiguous_matches "
                    "values (%s, %s, %s, %s, %s, %s, %s, %s)",
                    POSSIBLE_MATCH,
                )
        run_dbt(url, "build", "--select", "intermediate", "marts")
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


def answer(conn, record: str, purpose: str, channel: str, partner_code: str = "") -> str:
    """The status of `record`'s client in June 2024, three months after the letters."""
    source, _, record_id = record.partition(":")
    at = datetime(2024, 6, 1, 12, 0, tzinfo=MOSCOW)
    got = can_contact(conn, source, record_id, purpose, channel, at, partner_code)
    assert got.allowed == (got.status == "granted")
    return got.status


def doubts(conn, ticket: str) -> set[str | None]:
    rows = conn.execute(
        "select distinct doubt_reason from consent.consent_event "
        "where source = 'helpdesk' and source_record_id = %s",
        (ticket,),
    ).fetchall()
    return {r[0] for r in rows}


def test_one_unreadable_purpose_stops_every_purpose_on_the_channel_the_letter_names(derived):
    # before the letter Anna could be called, texted and e-mailed
    assert answer(derived, "crm:K-21", "marketing", "sms") == "revoked"
    assert answer(derived, "crm:K-21", "processing", "sms") == "revoked"
    # the channel was readable: calls and e-mails are not touched
    assert answer(derived, "crm:K-21", "marketing", "call") == "granted"
    assert answer(derived, "crm:K-21", "marketing", "email") == "granted"
    assert answer(derived, "crm:K-21", "processing", "email") == "granted"
    assert doubts(derived, "HD-21") == {"scope_purposes_unreadable_widened_to_all"}


def test_all_purposes_with_a_misspelt_channel_stops_everything(derived):
    for purpose, channel in [("marketing", "call"), ("marketing", "sms"), ("processing", "post")]:
        assert answer(derived, "crm:K-22", purpose, channel) == "revoked", (purpose, channel)
    assert doubts(derived, "HD-22") == {"scope_channels_unreadable_widened_to_all"}


def test_a_scope_in_everyday_spelling_is_read_as_written(derived):
    # 'Third_party_transfer' by 'E-mail': the transfer to BETA stops by e-mail only
    assert answer(derived, "web:ACC-23", "third_party_transfer", "email", "BETA") == "revoked"
    assert answer(derived, "web:ACC-23", "third_party_transfer", "call", "BETA") == "granted"
    # nothing was widened: advertising e-mails are still allowed
    assert answer(derived, "crm:K-23", "marketing", "email") == "granted"
    assert doubts(derived, "HD-23") == {
        "scope_purposes_read_from_variant_spelling; scope_channels_read_from_variant_spelling"
    }


def test_the_report_names_the_widened_axis_never_what_the_letter_says(derived):
    rows = derived.execute(
        "select doubt_reason, detail from consent.consent_event where source = 'helpdesk'"
    ).fetchall()
    text = " ".join(str(value) for row in rows for value in row)
    for written in ("adverts", "emial", "E-mail", "Third_party"):
        assert written not in text


def test_a_partner_refusal_crosses_a_possible_identity_match(derived):
    # the partner's record is its own client; splink only found it possibly Gleb's
    assert answer(derived, "partner:BETA:B-24", "marketing", "sms") == "revoked"
    # Gleb's own SMS tick is overruled by the refusal, his card's calls by the restriction
    assert answer(derived, "crm:K-24", "marketing", "sms") == "revoked"
    assert answer(derived, "crm:K-24", "marketing", "call") == "restricted"
    # the restriction blocks every purpose on its channel, for Gleb too
    assert answer(derived, "crm:K-24", "processing", "call") == "restricted"
    # the partner's grant of advertising e-mails stays with the partner's record
    assert answer(derived, "partner:BETA:B-24", "marketing", "email") == "granted"
    assert answer(derived, "crm:K-24", "marketing", "email") == "none"
    crossed = derived.execute(
        "select action, source, doubt_reason from consent.consent_event "
        "where client_id = 'C-GLEB' and source = 'partner' order by action"
    ).fetchall()
    assert crossed == [
        ("restrict", "partner", "possible_match_revocation_honoured"),
        ("revoke", "partner", "possible_match_revocation_honoured"),
    ]
