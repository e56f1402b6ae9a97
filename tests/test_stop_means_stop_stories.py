"""Stop means stop, told as stories through the whole pipeline (ingest, dbt, splink, answers).

The worked example's two people, then the letters and forms real clients send: a date of birth
in a local format, a receipt time nobody can read, a code typed in capitals. Each one still
stops what it says, from the moment it arrived.

Then two people whom identity resolution (real splink, as the pipeline runs it) cannot tell
apart from someone else: it scores the pair between its review thresholds and keeps the records
on two clients (consent.identity_ambiguous_matches). When in doubt, do not contact (DESIGN rule
4; README "Fail-safe across identity"): a revocation carried by either record also stops the
other record's client, a grant never crosses, and the pair is listed for review.

* Sergei Smirnov has a credit card (processing, advertising calls) and ticked advertising SMS.
  A letter signed "Смирнов С.П.", with his birth date and another phone, stops all marketing:
  his card's calls and his SMS stop from the letter's receipt; processing does not.
* Olga Lebedeva agreed to advertising e-mails on the website (her month of birth mistyped),
  then refused e-mails in the CRM: the web account is not e-mailed from that refusal on.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from pipelines.answers import MOSCOW, can_contact
from pipelines.run import run_pipeline
from pipelines.settings import Settings
from sources import crm, helpdesk
from tests.conftest import EXAMPLES, fresh_database
from tests.landing_batches import csv_text, write_batch

# the hostile batches below arrived on 10 June 2024 at noon, Moscow time
ARRIVAL = datetime(2024, 6, 10, 12, 0, tzinfo=MOSCOW)
# the possible-match batches, on 5 July 2024
LATER_ARRIVAL = datetime(2024, 7, 5, 12, 0, tzinfo=MOSCOW)
ADS_EMAIL_SHA = "59639e7932fa9971d0554bfca5ddfdd139f0b61a983c2702f30f4e38f5c503bb"


def _arrive(folder: Path, at: datetime = ARRIVAL) -> None:
    marker = folder / "_SUCCESS"
    marker.touch()
    os.utime(marker, (at.timestamp(), at.timestamp()))


def _later_batch(landing: Path, source: str, batch_id: str, files: dict[str, str]) -> None:
    _arrive(write_batch(landing, source, batch_id, files), LATER_ARRIVAL)


def _possible_matches(landing: Path) -> None:
    """Smirnov and his letter, Lebedeva and her web account: each pair one person, or two."""
    client = {"updated_at": "2024-07-01T00:00:00"}
    _later_batch(
        landing,
        "crm",
        "2024-07-01",
        {
            "clients.csv": csv_text(
                [
                    {
                        **client,
                        "crm_client_id": "K-40",
                        "last_name": "Смирнов",
                        "first_name": "Сергей",
                        "middle_name": "Петрович",
                        "birth_date": "1980-05-12",
                        "phone": "+79031112233",
                        "email": "s.smirnov@example.ru",
                    },
                    {
                        **client,
                        "crm_client_id": "K-46",
                        "last_name": "Лебедева",
                        "first_name": "Ольга",
                        "middle_name": "Николаевна",
                        "birth_date": "1990-06-17",
                        "phone": "+79161110099",
                        "email": "o.lebedeva@example.ru",
                    },
                ],
                crm.CLIENTS.column_names,
            ),
            "contracts.csv": csv_text(
                [
                    {
                        "contract_id": "D-40",
                        "crm_client_id": "K-40",
                        "contract_number": "CARD-2024-0040",
                        "system_code": "CARDS",
                        "product_type": "CARD",
                        "product_name": "Кредитная карта",
                        "signed_at": "2024-01-10T10:00:00",
                        "scan_url": "https://scans.example.ru/CARD-2024-0040.pdf",
                    },
                ],
                crm.CONTRACTS.column_names,
            ),
            "consent_flags.csv": csv_text(
                [
                    {
                        "crm_client_id": "K-40",
                        "flag_code": "SMS_OK",
                        "value": "true",
                        "set_at": "2024-01-10T10:05:00",
                        "set_by": "operator05",
                    },
                    # Lebedeva tells the bank: no advertising e-mails
                    {
                        "crm_client_id": "K-46",
                        "flag_code": "MAIL_OK",
                        "value": "false",
                        "set_at": "2024-07-01T09:00:00",
                        "set_by": "operator11",
                    },
                ],
                crm.CONSENT_FLAGS.column_names,
            ),
        },
    )
    _later_batch(
        landing,
        "helpdesk",
        "2024-07-02",
        {
            "tickets.csv": csv_text(
                [
                    {
                        "ticket_id": "HD-40",
                        "received_at": "2024-07-02T10:00:00",
                        "request_type": "revoke_consent",
                        "fio": "Смирнов С.П.",
                        "birth_date": "1980-05-12",
                        "phone": "8 903 999 88 77",
                        "scope_purposes": "marketing",
                        "scope_channels": "all",
                        "letter_scan_url": "https://scans.example.ru/letters/HD-40.pdf",
                    },
                ],
                helpdesk.TICKETS.column_names,
            )
        },
    )
    signup = {
        "event_id": "EV-46",
        "occurred_at": "2024-06-20T10:00:00",
        "event_type": "consent_given",
        "account_id": "ACC-46",
        "person": {
            "last_name": "Лебедева",
            "first_name": "Ольга",
            "middle_name": None,
            "birth_date": "1990-07-17",
            "phone": None,
            "email": None,
        },
        "consents": [
            {
                "consent_code": "ads_email",
                "granted": True,
                "wording_version": "1",
                "wording_sha256": ADS_EMAIL_SHA,
            }
        ],
        "form_id": "signup-v3",
        "confirmation": "sms_code",
        "ip": None,
        "evidence_url": "https://logs.example.ru/EV-46",
    }
    _later_batch(landing, "web", "2024-06-20", {"events.jsonl": json.dumps(signup) + "\n"})


def _hostile_batches(landing: Path) -> None:
    letters = landing / "helpdesk" / "2024-06-10"
    letters.mkdir(parents=True)
    (letters / "tickets.csv").write_text(
        ",".join(helpdesk.TICKETS.column_names) + "\n"
        # Maria quotes her card contract; her birth date in a local format, the receipt time
        # unreadable, the request type in capitals
        "HD-20,10.06.2024 10:00,Revoke_Consent,Соколова М.А.,02.11.1988,,,,CARD-2023-0001,"
        "marketing,call,https://scans.example.ru/letters/HD-20.pdf,\n",
        encoding="utf-8",
    )
    _arrive(letters)
    forms = landing / "web" / "2024-06-05"
    forms.mkdir(parents=True)
    withdrawal = {
        "event_id": "EV-9",
        "occurred_at": "2024-06-05T09:00:00",
        "event_type": "consent_withdrawn",
        "account_id": "ACC-501",
        "person": {
            "last_name": "Sokolova",
            "first_name": "Maria",
            "birth_date": "1988/11/02",
            "phone": "+79035551234",
            "email": "m.sokolova@example.ru",
        },
        "consents": [{"consent_code": "ads_email", "granted": False}],
        "form_id": "profile-consents",
        "confirmation": "sms_code",
        "ip": "203.0.113.7",
        "evidence_url": "https://logs.example.ru/EV-9",
    }
    (forms / "events.jsonl").write_text(json.dumps(withdrawal) + "\n", encoding="utf-8")
    _arrive(forms)


@pytest.fixture(scope="module")
def pipeline(server_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("stop-means-stop")
    landing = root / "landing"
    shutil.copytree(EXAMPLES, landing)
    _hostile_batches(landing)
    _possible_matches(landing)
    with fresh_database(server_url) as url:
        settings = Settings(home=root / "home", landing_dir=landing, database_url=url)
        summary = run_pipeline(settings)
        assert summary.ok, summary.failures
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


def ask(conn, source, record, purpose, channel, at):
    instant = datetime.fromisoformat(at).replace(tzinfo=MOSCOW)
    return can_contact(conn, source, record, purpose, channel, instant)


def test_the_letter_links_to_maria_whatever_its_birth_date_says(pipeline):
    clients = dict(
        pipeline.execute(
            "select source_record_id, client_id from consent.client_xref "
            "where source_record_id in ('HD-20', 'K-3')"
        ).fetchall()
    )
    assert clients["HD-20"] == clients["K-3"]


def test_a_letter_with_an_unreadable_receipt_time_stops_calls_from_its_arrival(pipeline):
    before = ask(pipeline, "crm", "K-3", "marketing", "call", "2024-06-10T11:00")
    after = ask(pipeline, "crm", "K-3", "marketing", "call", "2024-06-10T13:00")
    assert before.allowed and before.status == "granted"
    assert (after.allowed, after.status) == (False, "revoked")
    (basis,) = after.basis
    assert (basis.source, basis.source_record_id, basis.action) == ("helpdesk", "HD-20", "revoke")
    assert datetime.fromisoformat(basis.effective_at) == ARRIVAL
    # the letter said calls: e-mail under the web consent is untouched by it
    assert ask(pipeline, "crm", "K-1", "marketing", "email", "2024-06-04T12:00").allowed


def test_a_web_withdrawal_with_a_garbled_birth_date_still_withdraws(pipeline):
    answer = ask(pipeline, "web", "ACC-501", "marketing", "email", "2024-06-06T12:00")
    assert (answer.allowed, answer.status) == (False, "revoked")
    assert answer.basis[0].source_record_id == "ACC-501"


def test_each_defect_is_reported_and_none_rejects_the_stop(pipeline):
    rows = pipeline.execute(
        "select source, record_id, field, rule, severity from consent.dq_rejections "
        "where stage = 'ingest' and batch_id in ('2024-06-10', '2024-06-05') "
        "order by source, field"
    ).fetchall()
    assert rows == [
        ("helpdesk", "HD-20", "birth_date", "invalid_date", "warn"),
        ("helpdesk", "HD-20", "received_at", "invalid_date", "warn"),
        ("helpdesk", "HD-20", "request_type", "unknown_value", "warn"),
        ("web", "EV-9", "birth_date", "invalid_date", "warn"),
    ]


# ------------------------------------------------------------ across a possible identity match
SMIRNOV, HIS_LETTER = ("crm", "K-40"), ("helpdesk", "HD-40")
LEBEDEVA, HER_ACCOUNT = ("crm", "K-46"), ("web", "ACC-46")


def client(conn, record: tuple[str, str]) -> str:
    return conn.execute(
        "select client_id from consent.client_xref where source = %s and source_record_id = %s",
        record,
    ).fetchone()[0]


def test_identity_keeps_each_pair_apart_with_a_doubt(pipeline):
    pairs = {
        frozenset({(r[0], r[1]), (r[3], r[4])}): r
        for r in pipeline.execute(
            "select source_l, source_record_id_l, client_id_l, source_r, source_record_id_r, "
            "client_id_r, match_probability, same_client "
            "from consent.identity_ambiguous_matches"
        ).fetchall()
    }
    for one, other in ((SMIRNOV, HIS_LETTER), (LEBEDEVA, HER_ACCOUNT)):
        row = pairs[frozenset({one, other})]
        # scored between the review thresholds (0.5 <= p < 0.99) and not joined
        assert 0.5 <= row[6] < 0.99 and row[7] is False, row
        assert client(pipeline, one) != client(pipeline, other)
        assert {row[2], row[5]} == {client(pipeline, one), client(pipeline, other)}


def test_a_letter_that_may_be_smirnovs_stops_his_marketing_from_its_receipt(pipeline):
    before = ask(pipeline, *SMIRNOV, "marketing", "sms", "2024-07-02T09:59")
    assert (before.allowed, before.status) == (True, "granted")  # his tick
    for channel in ("sms", "call", "email"):
        after = ask(pipeline, *SMIRNOV, "marketing", channel, "2024-07-02T10:01")
        assert (after.allowed, after.status) == (False, "revoked"), channel
        (basis,) = after.basis
        assert (basis.source, basis.source_record_id, basis.action) == (*HIS_LETTER, "revoke")
        assert datetime.fromisoformat(basis.effective_at) == datetime(
            2024, 7, 2, 10, 0, tzinfo=MOSCOW
        )
    # the letter names marketing only: his card's processing consent holds
    kept = ask(pipeline, *SMIRNOV, "processing", "call", "2024-07-02T10:01")
    assert (kept.allowed, kept.status) == (True, "granted")


def test_his_grants_never_cross_to_the_letters_client(pipeline):
    # the letter's own client has nothing granted: not his tick, not his card
    for purpose, channel in (("processing", "call"), ("marketing", "sms")):
        answer = ask(pipeline, *HIS_LETTER, purpose, channel, "2024-07-02T09:00")
        assert (answer.allowed, answer.status) == (False, "none"), (purpose, channel)


def test_a_crm_refusal_stops_the_web_account_that_may_be_hers(pipeline):
    before = ask(pipeline, *HER_ACCOUNT, "marketing", "email", "2024-07-01T08:59")
    assert (before.allowed, before.status) == (True, "granted")
    after = ask(pipeline, *HER_ACCOUNT, "marketing", "email", "2024-07-01T09:01")
    assert (after.allowed, after.status) == (False, "revoked")
    (basis,) = after.basis
    assert (basis.source, basis.source_record_id, basis.action) == (*LEBEDEVA, "revoke")
    # the web grant stays with the web account: her CRM record never had one
    own = ask(pipeline, *LEBEDEVA, "marketing", "email", "2024-07-01T08:59")
    assert (own.allowed, own.status) == (False, "none")


def test_each_crossing_is_an_event_of_its_own_and_the_pair_is_reported(pipeline):
    crossed = pipeline.execute(
        "select event_id, client_id, source, source_record_id, action from consent.consent_event "
        "where doubt_reason = 'possible_match_revocation_honoured' order by event_id"
    ).fetchall()
    letter = pipeline.execute(
        "select event_id from consent.consent_event "
        "where source = 'helpdesk' and source_record_id = 'HD-40' and doubt_reason is null"
    ).fetchall()
    refusal = pipeline.execute(
        "select event_id from consent.consent_event "
        "where source = 'crm' and source_record_id = 'K-46' and action = 'revoke' "
        "and doubt_reason is null"
    ).fetchall()
    assert letter and len(refusal) == 1
    smirnov, account = client(pipeline, SMIRNOV), client(pipeline, HER_ACCOUNT)
    expected = [(f"{e}~{smirnov}", smirnov, *HIS_LETTER, "revoke") for (e,) in letter]
    expected.append((f"{refusal[0][0]}~{account}", account, *LEBEDEVA, "revoke"))
    assert crossed == sorted(expected)
    # each pair is listed for review, kept apart
    reported = {
        frozenset(records): detail
        for records, detail in pipeline.execute(
            "select source_records, detail from consent.report_conflicts "
            "where conflict_type = 'ambiguous_identity'"
        ).fetchall()
    }
    for one, other in ((SMIRNOV, HIS_LETTER), (LEBEDEVA, HER_ACCOUNT)):
        detail = reported[frozenset({":".join(one), ":".join(other)})]
        assert "kept apart" in detail
    # and the letter stays one request on the deadlines report, with its own client
    assert pipeline.execute(
        "select client_id from consent.report_revocation_deadlines where request_id = 'HD-40'"
    ).fetchall() == [(client(pipeline, HIS_LETTER),)]
