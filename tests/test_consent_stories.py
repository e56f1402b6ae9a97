"""Consent stories from DESIGN sections 1 and 7, through the whole pipeline and `can-contact`.

One landing zone holds every story's people (distinct people, distinct names); the pipeline runs
once for the module (ingest -> dbt staging -> splink identity -> derivation), then each story
asks its questions. The late-paper story adds a batch and runs the pipeline a second time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from pipelines.answers import MOSCOW, can_contact
from pipelines.run import run_pipeline
from pipelines.settings import Settings
from sources import crm, helpdesk, partner
from tests.conftest import fresh_database
from tests.landing_batches import csv_text, write_batch

WORDINGS = {
    ("pd_basic", "1"): ("2015-01-01", "", "Даю согласие на обработку персональных данных."),
    ("ads_call", "1"): ("2015-01-01", "2023-12-31", "Согласен на рекламные звонки."),
    ("ads_call", "2"): ("2024-01-01", "", "Согласен получать рекламные звонки о товарах."),
    ("ads_sms", "1"): ("2015-01-01", "", "Согласен получать рекламные SMS."),
    ("ads_email", "1"): ("2015-01-01", "", "Согласен получать рекламные письма."),
    ("ads_post", "1"): ("2015-01-01", "", "Согласен получать рекламу по почте."),
}


def sha(code: str, version: str) -> str:
    return hashlib.sha256(WORDINGS[(code, version)][2].encode()).hexdigest()


# headers as the contract declares them (sources/*.py)
CLIENT_HEADER = crm.CLIENTS.column_names
CONTRACT_HEADER = crm.CONTRACTS.column_names
FLAG_HEADER = crm.CONSENT_FLAGS.column_names
TICKET_HEADER = helpdesk.TICKETS.column_names
PARTNER_HEADER = partner.PARTNER_CLIENTS.column_names


def _catalog(root: Path) -> None:
    types = [
        ("pd_basic", "processing", "any", "", "120"),
        ("ads_call", "marketing", "call", "", "36"),
        ("ads_sms", "marketing", "sms", "", "36"),
        ("ads_email", "marketing", "email", "", "36"),
        ("ads_post", "marketing", "post", "", "24"),
    ]
    write_batch(
        root,
        "catalog",
        "2015-01-01",
        {
            "consent_types.csv": csv_text(
                [
                    dict(
                        zip(
                            ["consent_code", "purpose", "channel", "partner_code", "term_months"],
                            t,
                            strict=True,
                        )
                    )
                    for t in types
                ],
                [
                    "consent_code",
                    "purpose",
                    "channel",
                    "partner_code",
                    "term_months",
                    "description",
                ],
            ),
            "wordings.csv": csv_text(
                [
                    {
                        "consent_code": c,
                        "wording_version": v,
                        "effective_from": f,
                        "effective_to": t,
                        "text": text,
                        "text_sha256": sha(c, v),
                    }
                    for (c, v), (f, t, text) in WORDINGS.items()
                ],
                [
                    "consent_code",
                    "wording_version",
                    "effective_from",
                    "effective_to",
                    "text",
                    "text_sha256",
                ],
            ),
            "product_matrix.csv": csv_text(
                [
                    {
                        "rule_id": "M1",
                        "match_kind": "product_type",
                        "match_value": "CARD",
                        "consent_code": "ads_call",
                        "term_months": "36",
                        "effective_from": "2015-01-01",
                    },
                    {
                        "rule_id": "M2",
                        "match_kind": "system_code",
                        "match_value": "MOBILE",
                        "consent_code": "ads_sms",
                        "term_months": "36",
                        "effective_from": "2015-01-01",
                    },
                    {
                        "rule_id": "M3",
                        "match_kind": "contract_mask",
                        "match_value": "POL-%",
                        "consent_code": "ads_post",
                        "wording_version": "1",
                        "term_months": "24",
                        "effective_from": "2015-01-01",
                    },
                    {
                        "rule_id": "M4",
                        "match_kind": "contract_mask",
                        "match_value": "%",
                        "consent_code": "pd_basic",
                        "wording_version": "1",
                        "term_months": "120",
                        "effective_from": "2015-01-01",
                    },
                ],
                [
                    "rule_id",
                    "match_kind",
                    "match_value",
                    "consent_code",
                    "wording_version",
                    "term_months",
                    "effective_from",
                    "effective_to",
                ],
            ),
            "crm_flag_map.csv": csv_text(
                [
                    {"flag_code": "SMS_OK", "consent_code": "ads_sms"},
                    {"flag_code": "CALL_OK", "consent_code": "ads_call"},
                ],
                ["flag_code", "consent_code"],
            ),
        },
    )


# (crm id, last, first, middle, birth, phone, email)
PEOPLE = [
    ("T-1", "Орлова", "Алина", "Сергеевна", "1985-02-11", "+79161110001", "orlova@example.ru"),
    ("T-2", "Белов", "Глеб", "Игоревич", "1979-08-23", "+79161110002", "belov@example.ru"),
    ("T-3", "Жукова", "Вера", "Павловна", "1991-12-05", "+79161110003", "zhukova@example.ru"),
    ("T-4", "Иванов", "Иван", "Иванович", "1970-01-15", "+79161110004", "ivanov70@example.ru"),
    ("T-5", "Иванов", "Иван", "Иванович", "1988-06-30", "+79161110005", "ivanov88@example.ru"),
    ("T-6", "Фролов", "Денис", "Олегович", "1966-03-03", "+79161110006", "frolov@example.ru"),
    ("T-7", "Лебедева", "Нина", "Аркадьевна", "1993-09-19", "+79161110007", "lebedeva@example.ru"),
    ("T-8", "Савин", "Пётр", "Ильич", "1982-04-04", "+79161110008", "savin@example.ru"),
    ("T-9", "Зайцева", "Ольга", "Викторовна", "1977-07-07", "+79161110009", "zaitseva@example.ru"),
]


def _web_event(event_id, at, event_type, account, person, consents, confirmation="sms_code"):
    _, last, first, middle, birth, phone, email = person
    return json.dumps(
        {
            "event_id": event_id,
            "occurred_at": at,
            "event_type": event_type,
            "account_id": account,
            "person": {
                "last_name": last,
                "first_name": first,
                "middle_name": middle,
                "birth_date": birth,
                "phone": phone,
                "email": email,
            },
            "consents": consents,
            "form_id": "profile",
            "confirmation": confirmation,
            "ip": "203.0.113.9",
            "evidence_url": f"https://logs.example.ru/{event_id}",
        },
        ensure_ascii=False,
    )


def _landing(root: Path) -> None:
    _catalog(root)
    by_id = {p[0]: p for p in PEOPLE}
    clients = [
        dict(zip(CLIENT_HEADER, [*p, "", "", "2024-01-01T00:00:00"], strict=True)) for p in PEOPLE
    ]
    contracts = [
        # 1. telecom: the SMS consent of a 2019 mobile contract ran out in 2022, contract open
        {
            "contract_id": "C-1",
            "crm_client_id": "T-1",
            "contract_number": "MOB-2019-1",
            "system_code": "MOBILE",
            "product_type": "MOBILE",
            "signed_at": "2019-01-10T10:00:00",
        },
        # 2. a card and a phone line; the letter quotes the card only
        {
            "contract_id": "C-2",
            "crm_client_id": "T-2",
            "contract_number": "CARD-2022-2",
            "system_code": "CARDS",
            "product_type": "CARD",
            "signed_at": "2022-05-01T12:00:00",
        },
        {
            "contract_id": "C-3",
            "crm_client_id": "T-2",
            "contract_number": "MOB-2022-3",
            "system_code": "MOBILE",
            "product_type": "MOBILE",
            "signed_at": "2022-05-02T12:00:00",
        },
        # 6. insurance: a policy's mailing consent lapses in 2021, a new policy brings it back
        {
            "contract_id": "C-6",
            "crm_client_id": "T-6",
            "contract_number": "POL-2019-6",
            "system_code": "INSURANCE",
            "product_type": "OSAGO",
            "signed_at": "2019-03-01T09:00:00",
            "closed_at": "2020-03-01T09:00:00",
        },
        {
            "contract_id": "C-7",
            "crm_client_id": "T-6",
            "contract_number": "POL-2022-7",
            "system_code": "INSURANCE",
            "product_type": "KASKO",
            "signed_at": "2022-06-01T09:00:00",
        },
        # 5. namesakes: both Ivanovs have a card
        {
            "contract_id": "C-4",
            "crm_client_id": "T-4",
            "contract_number": "CARD-2023-4",
            "system_code": "CARDS",
            "product_type": "CARD",
            "signed_at": "2023-02-01T10:00:00",
        },
        {
            "contract_id": "C-5",
            "crm_client_id": "T-5",
            "contract_number": "CARD-2023-5",
            "system_code": "CARDS",
            "product_type": "CARD",
            "signed_at": "2023-02-01T10:00:00",
        },
        # 10. partner client with a card in the CRM
        {
            "contract_id": "C-8",
            "crm_client_id": "T-8",
            "contract_number": "CARD-2023-8",
            "system_code": "CARDS",
            "product_type": "CARD",
            "signed_at": "2023-01-15T10:00:00",
        },
        # 11. a card, whose calls (and processing) the client's letter stops
        {
            "contract_id": "C-10",
            "crm_client_id": "T-9",
            "contract_number": "CARD-2023-10",
            "system_code": "CARDS",
            "product_type": "CARD",
            "signed_at": "2023-04-01T10:00:00",
        },
    ]
    flags = [
        # 3. the SMS tick set in 2022 for T-2 (re-exported later, see the second CRM batch)
        {
            "crm_client_id": "T-2",
            "flag_code": "SMS_OK",
            "value": "true",
            "set_at": "2022-05-02T12:05:00",
            "set_by": "op1",
        },
    ]
    write_batch(
        root,
        "crm",
        "2024-01-01",
        {
            "clients.csv": csv_text(clients, CLIENT_HEADER),
            "contracts.csv": csv_text(contracts, CONTRACT_HEADER),
            "consent_flags.csv": csv_text(flags, FLAG_HEADER),
        },
    )
    # 3. a second CRM export after the letter still shows the old tick (its old set_at)
    write_batch(
        root,
        "crm",
        "2024-03-01",
        {
            "clients.csv": csv_text([], CLIENT_HEADER),
            "contracts.csv": csv_text([], CONTRACT_HEADER),
            "consent_flags.csv": csv_text(flags, FLAG_HEADER),
        },
    )
    write_batch(
        root,
        "helpdesk",
        "2024-02-01",
        {
            "tickets.csv": csv_text(
                [
                    # 2. letter quoting the card: all marketing, every channel, every product
                    {
                        "ticket_id": "L-2",
                        "received_at": "2024-01-20T10:00:00",
                        "request_type": "revoke_consent",
                        "fio": "Белов Г.И.",
                        "birth_date": by_id["T-2"][4],
                        "phone": "8 916 111-00-02",
                        "contract_number": "CARD-2022-2",
                        "scope_purposes": "marketing",
                        "scope_channels": "all",
                        "letter_scan_url": "https://scans.example.ru/L-2.pdf",
                    },
                    # 4. and 5. one Ivanov (born 1970) stops all marketing
                    {
                        "ticket_id": "L-4",
                        "received_at": "2024-01-20T10:00:00",
                        "request_type": "revoke_consent",
                        "fio": "Иванов Иван Иванович",
                        "birth_date": "1970-01-15",
                        "phone": "+7 916 111-00-04",
                        "contract_number": "CARD-2023-4",
                        "scope_purposes": "marketing",
                        "scope_channels": "all",
                        "letter_scan_url": "https://scans.example.ru/L-4.pdf",
                    },
                    # 11. "no реклама by phone": the purpose is no code the contract knows
                    {
                        "ticket_id": "L-9",
                        "received_at": "2024-01-20T10:00:00",
                        "request_type": "revoke_consent",
                        "fio": "Зайцева Ольга Викторовна",
                        "birth_date": by_id["T-9"][4],
                        "phone": "8 916 111-00-09",
                        "contract_number": "CARD-2023-10",
                        "scope_purposes": "реклама",
                        "scope_channels": "call",
                        "letter_scan_url": "https://scans.example.ru/L-9.pdf",
                    },
                ],
                TICKET_HEADER,
            )
        },
    )
    web = [
        # 4. the Ivanov who revoked asks for e-mails again: e-mail only re-opens
        _web_event(
            "W-4",
            "2024-02-10T09:00:00",
            "consent_given",
            "A-4",
            by_id["T-4"],
            [
                {
                    "consent_code": "ads_email",
                    "granted": True,
                    "wording_version": "1",
                    "wording_sha256": sha("ads_email", "1"),
                }
            ],
        ),
        # 8. forged wording hash
        _web_event(
            "W-3",
            "2024-02-10T09:00:00",
            "consent_given",
            "A-3",
            by_id["T-3"],
            [
                {
                    "consent_code": "ads_email",
                    "granted": True,
                    "wording_version": "1",
                    "wording_sha256": "0" * 64,
                }
            ],
        ),
        # 9. calls wording v2 cited in 2023, before it took effect in 2024
        _web_event(
            "W-7",
            "2023-05-05T09:00:00",
            "consent_given",
            "A-7",
            by_id["T-7"],
            [
                {
                    "consent_code": "ads_call",
                    "granted": True,
                    "wording_version": "2",
                    "wording_sha256": sha("ads_call", "2"),
                }
            ],
        ),
    ]
    write_batch(root, "web", "2024-02-15", {"events.jsonl": "\n".join(web) + "\n"})
    write_batch(
        root,
        "partner",
        "2024-02-01",
        {
            "partner_clients.csv": csv_text(
                [
                    # 10. the partner restricts calls for its client, whatever the card says
                    {
                        "partner_code": "GAMMA",
                        "partner_client_id": "G-8",
                        "last_name": "Savin",
                        "first_name": "Petr",
                        "middle_name": "Ilich",
                        "birth_date": "1982-04-04",
                        "phone": "+7 916 111 00 08",
                        "email": "savin@example.ru",
                        "consent_code": "ads_sms",
                        "granted": "true",
                        "obtained_at": "2023-06-01T00:00:00",
                        "valid_until": "2025-06-01T00:00:00",
                        "restricted_channels": "call",
                        "agreement_id": "AG-G",
                        "evidence_url": "https://partners.example.ru/G-8",
                    },
                ],
                PARTNER_HEADER,
            )
        },
    )


LATE_PAPER = {
    # 7. a paper card contract signed in 2023, scanned and loaded a year later
    "contract_id": "C-9",
    "crm_client_id": "T-7",
    "contract_number": "CARD-2023-9",
    "system_code": "CARDS",
    "product_type": "CARD",
    "signed_at": "2023-03-01T10:00:00",
    "scan_url": "https://scans.example.ru/CARD-2023-9.pdf",
}


@pytest.fixture(scope="module")
def pipeline(server_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("stories")
    landing = root / "landing"
    _landing(landing)
    with fresh_database(server_url) as url:
        settings = Settings(home=root / "home", landing_dir=landing, database_url=url)
        summary = run_pipeline(settings)
        assert summary.ok, summary.failures
        assert summary.rows_rejected == 0
        # autocommit: an open read transaction would block the second run's table rewrites
        with psycopg.connect(url, autocommit=True) as conn:
            yield {"conn": conn, "settings": settings, "landing": landing}


def ask(pipeline, source, record, purpose, channel, at):
    instant = datetime.fromisoformat(at).replace(tzinfo=MOSCOW)
    return can_contact(pipeline["conn"], source, record, purpose, channel, instant)


def test_telecom_consent_expires_while_the_contract_stays_active(pipeline):
    assert ask(pipeline, "crm", "T-1", "marketing", "sms", "2021-06-01T12:00").status == "granted"
    answer = ask(pipeline, "crm", "T-1", "marketing", "sms", "2023-06-01T12:00")
    assert (answer.allowed, answer.status) == (False, "expired")
    assert answer.basis[0].event_id == "crm:contract:C-1:M2"
    # processing under the same contract runs 120 months and is still granted
    assert ask(pipeline, "crm", "T-1", "processing", "post", "2023-06-01T12:00").allowed


def test_a_letter_about_one_contract_revokes_marketing_on_every_product_and_source(pipeline):
    for channel in ("call", "sms"):  # call from the card, sms from the phone line and the tick
        before = ask(pipeline, "crm", "T-2", "marketing", channel, "2024-01-10T12:00")
        after = ask(pipeline, "crm", "T-2", "marketing", channel, "2024-02-10T12:00")
        assert before.allowed and not after.allowed, channel
        assert after.status == "revoked"
        assert after.basis[0].source == "helpdesk"
        assert after.basis[0].evidence_url == "https://scans.example.ru/L-2.pdf"
    # the same answer through the letter's own record: one golden client
    assert ask(pipeline, "helpdesk", "L-2", "marketing", "call", "2024-02-10T12:00").status == (
        "revoked"
    )


def test_a_second_crm_export_still_ticking_after_the_revocation_reopens_nothing(pipeline):
    answer = ask(pipeline, "crm", "T-2", "marketing", "sms", "2024-04-01T12:00")
    assert (answer.allowed, answer.status) == (False, "revoked")


def test_a_regrant_of_one_channel_reopens_only_that_channel(pipeline):
    assert ask(pipeline, "crm", "T-4", "marketing", "email", "2024-03-01T12:00").allowed
    call = ask(pipeline, "crm", "T-4", "marketing", "call", "2024-03-01T12:00")
    assert (call.allowed, call.status) == (False, "revoked")


def test_a_letter_whose_purpose_cannot_be_read_stops_every_purpose_on_its_channel(pipeline):
    # when in doubt, do not contact: "реклама" could mean any purpose, "call" is plain
    for purpose in ("marketing", "processing"):
        before = ask(pipeline, "crm", "T-9", purpose, "call", "2024-01-10T12:00")
        after = ask(pipeline, "crm", "T-9", purpose, "call", "2024-02-10T12:00")
        assert (before.status, after.status) == ("granted", "revoked"), purpose
        assert after.basis[0].evidence_url == "https://scans.example.ru/L-9.pdf"
    # the channel was readable, so the letter stops calls only
    assert ask(pipeline, "crm", "T-9", "processing", "sms", "2024-02-10T12:00").allowed


def test_namesakes_keep_their_own_consents(pipeline):
    other = ask(pipeline, "crm", "T-5", "marketing", "call", "2024-03-01T12:00")
    assert other.allowed and other.status == "granted"
    revoked = ask(pipeline, "crm", "T-4", "marketing", "call", "2024-03-01T12:00")
    assert revoked.client_id != other.client_id


def test_insurance_consent_lapses_with_one_policy_and_returns_with_another(pipeline):
    statuses = [
        ask(pipeline, "crm", "T-6", "marketing", "post", at).status
        for at in ("2020-06-01T12:00", "2021-06-01T12:00", "2022-07-01T12:00")
    ]
    assert statuses == ["granted", "expired", "granted"]


def test_a_forged_wording_hash_does_not_count(pipeline):
    answer = ask(pipeline, "web", "A-3", "marketing", "email", "2024-03-01T12:00")
    assert (answer.allowed, answer.status) == (False, "none")
    doubt = (
        pipeline["conn"]
        .execute(
            "select is_counted, doubt_reason from consent.consent_event "
            "where event_id = 'web:W-3#0'"
        )
        .fetchone()
    )
    assert doubt == (False, "wording_hash_mismatch")


def test_a_wording_used_before_it_was_in_force_does_not_count(pipeline):
    # the event itself, not the answer: a later story gives the same person a paper contract
    # covering that instant, which may run before or after this test
    doubt = (
        pipeline["conn"]
        .execute(
            "select is_counted, doubt_reason from consent.consent_event "
            "where event_id = 'web:W-7#0'"
        )
        .fetchone()
    )
    assert doubt == (False, "wording_not_in_force")
    grants = (
        pipeline["conn"]
        .execute(
            "select count(*) from consent.consent_history h join consent.client_xref x "
            "using (client_id) where x.source = 'web' and x.source_record_id = 'A-7' "
            "and h.basis_event_id = 'web:W-7#0'"
        )
        .fetchone()
    )
    assert grants == (0,)


def test_a_partner_restriction_blocks_calls_whatever_the_card_says(pipeline):
    before = ask(pipeline, "crm", "T-8", "marketing", "call", "2023-03-01T12:00")
    during = ask(pipeline, "crm", "T-8", "marketing", "call", "2024-03-01T12:00")
    after = ask(pipeline, "crm", "T-8", "marketing", "call", "2025-07-01T12:00")
    assert (before.status, during.status, after.status) == ("granted", "restricted", "granted")
    assert ask(pipeline, "partner", "GAMMA:G-8", "marketing", "sms", "2024-03-01T12:00").allowed


def test_the_same_question_at_several_past_instants(pipeline):
    answers = {
        at: ask(pipeline, "crm", "T-2", "marketing", "sms", at).status
        for at in ("2022-01-01T12:00", "2022-06-01T12:00", "2024-01-25T12:00", "2026-01-01T12:00")
    }
    assert answers == {
        "2022-01-01T12:00": "none",
        "2022-06-01T12:00": "granted",
        "2024-01-25T12:00": "revoked",
        "2026-01-01T12:00": "revoked",
    }


def test_a_late_paper_contract_changes_history_from_its_signing(pipeline):
    question = ("crm", "T-7", "marketing", "call", "2023-06-01T12:00")
    assert ask(pipeline, *question).status == "none"
    shutil.copytree(
        pipeline["landing"] / "crm" / "2024-03-01", pipeline["landing"] / "crm" / "2024-09-01"
    )
    late = pipeline["landing"] / "crm" / "2024-09-01" / "contracts.csv"
    late.write_text(csv_text([LATE_PAPER], CONTRACT_HEADER), encoding="utf-8")
    summary = run_pipeline(pipeline["settings"])
    assert summary.ok and summary.batches_loaded == 1
    answer = ask(pipeline, *question)
    assert (answer.allowed, answer.status) == (True, "granted")
    assert answer.basis[0].evidence_url == "https://scans.example.ru/CARD-2023-9.pdf"
