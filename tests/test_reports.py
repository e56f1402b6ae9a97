"""Reports as stories: revocation deadlines on the Russian production calendar, conflicts."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date, datetime, timedelta

import psycopg
import pytest

from assets.calendar import calendar_rows, write_calendar
from pipelines.answers import MOSCOW
from pipelines.dbt_cli import run_dbt
from tests.conftest import EXAMPLES, clock, fresh_database, load_and_stage

TICKET = (
    "{id},{received},revoke_consent,Ким В.,1975-04-19,8 903 555 00 11,,,KR-2024-0007,"
    "marketing,all,https://scans.example.ru/letters/{id}.pdf,\n"
)
LETTERS = {  # ticket -> (received, batch it arrives in)
    "HD-20": ("2024-12-26T16:00:00", "2025-02-01"),  # over the New Year holidays, loaded late
    "HD-30": ("2024-12-20T09:00:00", "2025-01-10"),  # a working Saturday on the way
    "HD-40": ("2025-12-29T11:00:00", "2026-01-12"),  # the 2026 New Year holidays
    "HD-50": ("2024-04-26T18:30:00", "2024-05-02"),  # May holidays, working Saturday 27 April
}


def _three_years_before(moment: datetime) -> datetime:
    """36 calendar months earlier (29 February falls back to the 28th)."""
    day = min(moment.day, 28) if moment.month == 2 else moment.day
    return moment.replace(year=moment.year - 3, day=day)


def _email_consent(event_id: str, account: str, at: datetime) -> str:
    wording = "Согласен получать рекламные письма."
    return json.dumps(
        {
            "event_id": event_id,
            "occurred_at": at.isoformat(),
            "event_type": "consent_given",
            "account_id": account,
            "person": {
                "last_name": "Petrova",
                "first_name": "Anna",
                "middle_name": None,
                "birth_date": "1990-01-01",
                "phone": None,
                "email": None,
            },
            "consents": [
                {
                    "consent_code": "ads_email",
                    "granted": True,
                    "wording_version": "1",
                    "wording_sha256": hashlib.sha256(wording.encode()).hexdigest(),
                }
            ],
            "form_id": "signup",
            "confirmation": "email_link",
            "ip": None,
            "evidence_url": f"https://logs.example.ru/{event_id}",
        }
    )


@pytest.fixture(scope="module")
def reports(server_url, tmp_path_factory):
    landing = tmp_path_factory.mktemp("reports") / "landing"
    shutil.copytree(EXAMPLES, landing)
    header = (EXAMPLES / "helpdesk" / "2024-06-03" / "tickets.csv").read_text().splitlines()[0]
    for ticket, (received, batch) in LETTERS.items():
        folder = landing / "helpdesk" / batch
        folder.mkdir(exist_ok=True)
        path = folder / "tickets.csv"
        if not path.exists():
            path.write_text(header + "\n", encoding="utf-8")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(TICKET.format(id=ticket, received=received))
        (folder / "_SUCCESS").touch()
    # two e-mail consents (36-month term): one ends in 10 days, one ended 10 days ago
    # today is the session's clock (CONSENT_NOW, tests/conftest.py), the instant dbt derives at
    today = clock().astimezone(MOSCOW).replace(microsecond=0, tzinfo=None)
    events = [
        _email_consent("EXP-1", "ACC-701", _three_years_before(today + timedelta(days=10))),
        _email_consent("EXP-2", "ACC-702", _three_years_before(today - timedelta(days=10))),
    ]
    web = landing / "web" / today.strftime("%Y-%m-%d")
    web.mkdir()
    (web / "events.jsonl").write_text("\n".join(events) + "\n", encoding="utf-8")
    (web / "_SUCCESS").touch()
    # a web grant whose text hash is not the catalog's: not counted, a wording_mismatch conflict
    forged = json.loads(_email_consent("WM-1", "ACC-703", datetime(2024, 6, 1, 9, 30)))
    forged["consents"][0]["wording_sha256"] = "0" * 64
    forged_batch = landing / "web" / "2024-06-04"
    forged_batch.mkdir()
    (forged_batch / "events.jsonl").write_text(json.dumps(forged) + "\n", encoding="utf-8")
    (forged_batch / "_SUCCESS").touch()
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn:
            write_calendar(conn, 2030)
            conn.execute(
                "insert into consent.client_xref (source, source_record_id, client_id) "
                "select 'helpdesk', ticket_id, 'C-VIKTOR' from staging.stg_helpdesk__tickets "
                "union all select 'web', account_id, 'C-' || account_id "
                "from staging.stg_web__events group by account_id"
            )
        run_dbt(url, "build", "--select", "intermediate", "marts")
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


def test_the_calendar_knows_substituted_days_off_and_working_saturdays():
    days = {day: working for day, working, _, _ in calendar_rows(2024, 2025)}
    assert days[date(2024, 12, 28)] is True  # a Saturday made a working day
    assert days[date(2024, 12, 30)] is False  # moved off that Saturday
    assert days[date(2024, 12, 31)] is False  # moved off 7 January
    assert not any(days[date(2025, 1, d)] for d in range(1, 9))
    assert days[date(2025, 1, 9)] is True


def test_revocation_deadlines_are_ten_working_days_on_the_production_calendar(reports):
    rows = dict(
        reports.execute(
            "select request_id, deadline_day from consent.report_revocation_deadlines "
            "where source = 'helpdesk'"
        ).fetchall()
    )
    assert rows == {
        "HD-10": date(2024, 6, 18),  # the worked example: Russia Day skipped
        "HD-20": date(2025, 1, 20),  # 27 Dec, Sat 28 Dec, then 9 January onwards
        "HD-30": date(2025, 1, 14),
        "HD-40": date(2026, 1, 22),  # 30 Dec, then nothing until 12 January
        "HD-50": date(2024, 5, 16),  # Sat 27 April works, 1 and 9-10 May do not
    }


def test_each_request_says_whether_it_was_applied_in_time(reports):
    states = dict(
        reports.execute(
            "select request_id, state from consent.report_revocation_deadlines "
            "where source = 'helpdesk'"
        ).fetchall()
    )
    # HD-20 reached the golden tables with the batch of 1 February, after its 20 January deadline
    assert states == {
        "HD-10": "on_time",
        "HD-20": "late",
        "HD-30": "on_time",
        "HD-40": "on_time",
        "HD-50": "on_time",
    }


def test_grants_with_a_wording_that_does_not_match_are_reported_as_conflicts(reports):
    # the worked example's grants all match the catalog; the forged web grant WM-1 does not
    rows = reports.execute(
        "select client_id, source_records, event_ids from consent.report_conflicts "
        "where conflict_type = 'wording_mismatch'"
    ).fetchall()
    assert rows == [("C-ACC-703", ["web:ACC-703"], ["web:WM-1#0"])]
    # and the grant it names is not counted
    assert reports.execute(
        "select is_counted, doubt_reason from consent.consent_event where event_id = 'web:WM-1#0'"
    ).fetchone() == (False, "wording_hash_mismatch")


def test_consents_expiring_soon_and_just_expired_are_reported_with_their_source(reports):
    rows = reports.execute(
        "select source_record_id, state, process, event_id from consent.report_expiring "
        "where source = 'web' order by 1"
    ).fetchall()
    assert rows == [
        ("ACC-701", "expiring", "web_form", "web:EXP-1#0"),
        ("ACC-702", "expired", "web_form", "web:EXP-2#0"),
    ]


def test_every_report_is_exported_as_csv_for_dpos(reports, tmp_path):
    from assets.exports import export_reports

    rows = export_reports(reports, tmp_path)
    assert set(rows) == {
        "report_expiring",
        "report_conflicts",
        "report_revocation_deadlines",
        "report_depersonalisation",
    }
    deadlines = (tmp_path / "report_revocation_deadlines.csv").read_text().splitlines()
    assert deadlines[0].startswith("request_id,client_id,source,source_record_id")
    assert len(deadlines) == rows["report_revocation_deadlines"] + 1
