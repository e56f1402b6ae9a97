"""Stop means stop, told as stories through the whole pipeline (ingest, dbt, splink, answers).

The worked example's two people, then the letters and forms real clients send: a date of birth
in a local format, a receipt time nobody can read, a code typed in capitals. Each one still
stops what it says, from the moment it arrived.
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
from sources import helpdesk
from tests.conftest import EXAMPLES, fresh_database

# the hostile batches below arrived on 10 June 2024 at noon, Moscow time
ARRIVAL = datetime(2024, 6, 10, 12, 0, tzinfo=MOSCOW)


def _arrive(folder: Path) -> None:
    marker = folder / "_SUCCESS"
    marker.touch()
    os.utime(marker, (ARRIVAL.timestamp(), ARRIVAL.timestamp()))


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
