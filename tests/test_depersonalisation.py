"""Erase requests as stories (DESIGN rule 8): held while a retention duty lasts, then executed.

The worked example plus five clients who wrote to the helpdesk asking to be erased, dated
relative to today: Orlova (her only contract closed six years ago: due, and executed), Belov
(contract closed two years ago: held until closing + 5 years), Titov (contract still open:
held with no end), Zueva (gave a new web consent after her request: held while it lasts) and a
letter nobody could attribute to a client. The report is built by dbt on a real database; the
execution runs the asset's own function; then the usual things happen to the data: the
execution runs again, dbt rebuilds staging from raw, identity resolution runs, and a late CRM
batch re-sends Orlova's card.

A second story checks the report on the generator's feeds against its truth: every erase_data
ticket is listed, with exactly the contract holds the truth's contracts imply; and in 2040, when
every consent and retention of those fixed-date feeds has run out, exactly the requests without
an open contract are due, each from the date worked out from the feeds, and the execution
depersonalises exactly their clients' records.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from assets.calendar import write_calendar
from assets.depersonalisation import execute_depersonalisation
from pipelines.answers import MOSCOW
from pipelines.dbt_cli import run_dbt
from pipelines.resources import ConsentCenterResource
from sources.loader import load_batch
from sources.phones import refresh_phone_numbers
from tests.conftest import EXAMPLE_XREF, EXAMPLES, clock, fresh_database, load_and_stage
from tests.staged_tables import staged_versus_base

# "today" is the session's clock (CONSENT_NOW, tests/conftest.py): the instant dbt derives at
NOW = clock().astimezone(MOSCOW).replace(microsecond=0, tzinfo=None)
ADS_EMAIL_SHA = "59639e7932fa9971d0554bfca5ddfdd139f0b61a983c2702f30f4e38f5c503bb"


def years_ago(years: int, days: int = 0) -> datetime:
    day = min(NOW.day, 28) if NOW.month == 2 else NOW.day
    return NOW.replace(year=NOW.year - years, day=day) - timedelta(days=days)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


ORLOVA_CONTRACT_CLOSED = years_ago(6)
BELOV_CONTRACT_CLOSED = years_ago(2)
ZUEVA_CONSENT_AT = NOW - timedelta(days=10)

CLIENTS = [  # crm_client_id, last, first, middle, birth, phone, email, passport, address
    ("E-1", "Орлова", "Анна", "Сергеевна", "1980-02-03", "+7 916 111-22-33",
     "orlova@example.ru", "4501 987654", "г. Москва, ул. Тверская, д. 1"),
    ("E-2", "Белов", "Борис", "", "1971-05-06", "89162223344", "", "", ""),
    ("E-3", "Титов", "Тимур", "", "1990-07-08", "89163334455", "", "", ""),
]  # fmt: skip
CONTRACTS = [  # contract_id, crm_client_id, number, system, type, name, signed, closed
    ("D-E1", "E-1", "DEP-2015-0101", "DEPOSIT", "DEPOSIT", "Вклад",
     years_ago(10), ORLOVA_CONTRACT_CLOSED),
    ("D-E2", "E-2", "KR-2019-0202", "LOANS", "LOAN", "Кредит наличными",
     years_ago(7), BELOV_CONTRACT_CLOSED),
    ("D-E3", "E-3", "CARD-2023-0303", "CARDS", "CARD", "Кредитная карта", years_ago(3), None),
]  # fmt: skip
TICKETS = [  # ticket_id, received, fio, birth, phone, email, passport, contract
    ("HD-E1", NOW - timedelta(days=30), "Орлова А.С.", "1980-02-03", "8 916 111 22 33",
     "orlova@example.ru", "4501 987654", "DEP-2015-0101"),
    ("HD-E2", NOW - timedelta(days=20), "Белов Борис", "", "89162223344", "", "", "KR-2019-0202"),
    ("HD-E3", NOW - timedelta(days=15), "Титов Т.", "", "89163334455", "", "", ""),
    ("HD-E4", NOW - timedelta(days=40), "Зуева Зоя", "", "", "zueva@example.ru", "", ""),
    ("HD-E5", NOW - timedelta(days=5), "Неизвестный Н.Н.", "", "", "", "", ""),
]  # fmt: skip
XREF = [
    *EXAMPLE_XREF,
    ("crm", "E-1", "C-ORLOVA"),
    ("helpdesk", "HD-E1", "C-ORLOVA"),
    ("web", "ACC-E1", "C-ORLOVA"),
    ("partner", "BETA:B-E1", "C-ORLOVA"),
    ("crm", "E-2", "C-BELOV"),
    ("helpdesk", "HD-E2", "C-BELOV"),
    ("crm", "E-3", "C-TITOV"),
    ("helpdesk", "HD-E3", "C-TITOV"),
    ("web", "ACC-E4", "C-ZUEVA"),
    ("helpdesk", "HD-E4", "C-ZUEVA"),
]  # HD-E5 is nobody's
GOLDEN = [  # what identity resolution would have written (personal data included)
    ("C-MARIA", "Соколова", "Мария", "Андреевна", "1988-11-02", "+79035551234"),
    ("C-VIKTOR", "Ким", "Виктор", "Олегович", "1975-04-19", "+79035550011"),
    ("C-ORLOVA", "Орлова", "Анна", "Сергеевна", "1980-02-03", "+79161112233"),
    ("C-BELOV", "Белов", "Борис", None, "1971-05-06", "+79162223344"),
    ("C-TITOV", "Титов", "Тимур", None, "1990-07-08", "+79163334455"),
    ("C-ZUEVA", "Зуева", "Зоя", None, None, None),
]
ORLOVA_RECORDS = {
    ("crm", "E-1"),
    ("helpdesk", "HD-E1"),
    ("web", "ACC-E1"),
    ("partner", "BETA:B-E1"),
}

# Orlova's personal data in any spelling the feeds use
ORLOVA_TEXT = ["Орлова", "Orlova", "orlova", "Тверская", "1980-02-03", "198.51.100.23"]
ORLOVA_DIGITS = ["9161112233", "4501987654"]
PERSON_RELATIONS = [
    "raw.crm_clients",
    "raw.web_events",
    "raw.helpdesk_tickets",
    "raw.partner_clients",
    "raw.phone_numbers",
    "staging.stg_crm__clients",
    "staging.stg_web__events",
    "staging.stg_helpdesk__tickets",
    "staging.stg_partner__clients",
    "consent.golden_client",
    "consent.dq_rejections",
]
SNAPSHOT = [
    *PERSON_RELATIONS,
    "consent.client_xref",
    "consent.depersonalisation_audit",
    "consent.depersonalised_records",
    "consent.report_depersonalisation",
    "consent.consent_event",
]


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    (path.parent / "_SUCCESS").touch()


def _header(relative: str) -> list[str]:
    return (EXAMPLES / relative).read_text(encoding="utf-8").splitlines()[0].split(",")


def _web_event(event_id: str, account: str, at: datetime, person: dict, ip: str) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "occurred_at": iso(at),
            "event_type": "consent_given",
            "account_id": account,
            "person": person,
            "consents": [
                {
                    "consent_code": "ads_email",
                    "granted": True,
                    "wording_version": "1",
                    "wording_sha256": ADS_EMAIL_SHA,
                }
            ],
            "form_id": "signup",
            "confirmation": "email_link",
            "ip": ip,
            "evidence_url": f"https://logs.example.ru/{event_id}",
        },
        ensure_ascii=False,
    )


def crm_card_batch(landing: Path, batch: str, clients: list[tuple]) -> Path:
    header = _header("crm/2024-06-01/clients.csv")
    rows = [[*c, iso(NOW - timedelta(days=60))] for c in clients]
    _csv(landing / "crm" / batch / "clients.csv", header, rows)
    for name in ("contracts.csv", "consent_flags.csv"):  # a CRM batch always has all three
        if not (landing / "crm" / batch / name).exists():
            _csv(landing / "crm" / batch / name, _header(f"crm/2024-06-01/{name}"), [])
    return landing / "crm" / batch


def write_landing(landing: Path) -> None:
    shutil.copytree(EXAMPLES, landing)
    batch = "2025-01-10"
    # Orlova's card once more with a birth date nobody can read: rejected at the door, and kept
    # in dq_rejections.raw_record with everything else it said
    unreadable = (*CLIENTS[0][:4], "03.02.1980", *CLIENTS[0][5:])
    crm_card_batch(landing, batch, [*CLIENTS, unreadable])
    _csv(
        landing / "crm" / batch / "contracts.csv",
        _header("crm/2024-06-01/contracts.csv"),
        [
            [cid, owner, number, system, kind, name, iso(signed), iso(closed) if closed else "",
             "MSK1", f"https://scans.example.ru/{number}.pdf"]
            for cid, owner, number, system, kind, name, signed, closed in CONTRACTS
        ],
    )  # fmt: skip
    _csv(
        landing / "helpdesk" / batch / "tickets.csv",
        _header("helpdesk/2024-06-03/tickets.csv"),
        [
            [tid, iso(received), "erase_data", fio, birth, phone, email, passport, contract,
             "", "", f"https://scans.example.ru/letters/{tid}.pdf", ""]
            for tid, received, fio, birth, phone, email, passport, contract in TICKETS
        ],
    )  # fmt: skip
    _csv(
        landing / "partner" / batch / "partner_clients.csv",
        _header("partner/2024-06-03/partner_clients.csv"),
        [
            ["BETA", "B-E1", "Orlova", "Anna", "", "1980-02-03", "+79161112233",
             "orlova@example.ru", "ads_sms", "true", iso(years_ago(8)), "", "",
             "AG-BETA-1", "https://partners.example.ru/BETA/B-E1"]
        ],
    )  # fmt: skip
    orlova = {
        "last_name": "Orlova",
        "first_name": "Anna",
        "middle_name": None,
        "birth_date": "1980-02-03",
        "phone": "+79161112233",
        "email": "orlova@example.ru",
    }
    zueva = {**dict.fromkeys(orlova), "last_name": "Zueva", "email": "zueva@example.ru"}
    web = landing / "web" / batch
    web.mkdir(parents=True)
    (web / "events.jsonl").write_text(
        _web_event("EV-E1", "ACC-E1", years_ago(8), orlova, "198.51.100.23")
        + "\n"
        + _web_event("EV-E4", "ACC-E4", ZUEVA_CONSENT_AT, zueva, "198.51.100.44")
        + "\n",
        encoding="utf-8",
    )
    (web / "_SUCCESS").touch()
    # the batch arrives "today", at the session's clock: its marker's time is its arrival, and
    # a letter received after its batch arrived would be re-dated to the arrival
    for marker in landing.glob(f"*/{batch}/_SUCCESS"):
        os.utime(marker, (clock().timestamp(), clock().timestamp()))


def pii_hits(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every person-bearing relation that still show Orlova's personal data."""
    hits = {}
    for relation in PERSON_RELATIONS:
        hits[relation] = conn.execute(
            f"select count(*) from {relation} t "
            "where t::text like any(%s) "
            "or regexp_replace(t::text, '[^0-9]', '', 'g') like any(%s)",
            ([f"%{s}%" for s in ORLOVA_TEXT], [f"%{d}%" for d in ORLOVA_DIGITS]),
        ).fetchone()[0]
    return hits


def snapshot(conn: psycopg.Connection) -> dict[str, str]:
    return {
        relation: conn.execute(
            f"select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {relation} t"
        ).fetchone()[0]
        for relation in SNAPSHOT
    }


def report(conn: psycopg.Connection) -> dict[str, dict]:
    rows = conn.execute(
        "select coalesce(client_id, request_id), to_jsonb(r) "
        "from consent.report_depersonalisation r"
    ).fetchall()
    return {key: row for key, row in rows}


def orlova_evidence(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "select event_id, client_id, action, effective_at, evidence_url, evidence_level "
        "from consent.consent_event where client_id = 'C-ORLOVA' order by event_id"
    ).fetchall()


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).astimezone(MOSCOW).replace(tzinfo=None)


@pytest.fixture(scope="module")
def story(server_url, tmp_path_factory):
    """The whole story on one database; every step's observations are kept for the tests."""
    root = tmp_path_factory.mktemp("erasure")
    landing = root / "landing"
    write_landing(landing)
    seen: dict = {}
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            write_calendar(conn, NOW.year + 1)  # revocation deadlines need it
            cur.executemany(
                "insert into consent.client_xref (source, source_record_id, client_id, "
                "match_probability, record_hash) values (%s, %s, %s, 1.0, 'fingerprint')",
                XREF,
            )
            cur.executemany(
                "insert into consent.golden_client (client_id, last_name, first_name, "
                "middle_name, birth_date, phone, email, source_record_count) "
                "values (%s, %s, %s, %s, %s, %s, null, 1)",
                GOLDEN,
            )
        run_dbt(url, "build", "--select", "intermediate", "marts")
        with psycopg.connect(url, autocommit=True) as conn:
            seen["report"] = report(conn)
            seen["pii_before"] = pii_hits(conn)
            seen["evidence_before"] = orlova_evidence(conn)
            seen["others_before"] = conn.execute(
                "select * from consent.golden_client where client_id <> 'C-ORLOVA' order by 1"
            ).fetchall()

            # 1. the execution
            seen["first"] = execute_depersonalisation(conn)
            seen["pii_after"] = pii_hits(conn)
            seen["staged_after"] = staged_versus_base(conn)
            seen["evidence_after"] = orlova_evidence(conn)
            seen["others_after"] = conn.execute(
                "select * from consent.golden_client where client_id <> 'C-ORLOVA' order by 1"
            ).fetchall()
            seen["golden_after"] = conn.execute(
                "select * from consent.golden_client where client_id = 'C-ORLOVA'"
            ).fetchone()
            seen["audit"] = conn.execute(
                "select to_jsonb(a) from consent.depersonalisation_audit a"
            ).fetchall()
            seen["records"] = conn.execute(
                "select source, source_record_id, client_id, pseudonym "
                "from consent.depersonalised_records"
            ).fetchall()
            seen["raw_after"] = {
                "crm": conn.execute(
                    "select last_name, first_name, middle_name, birth_date, phone, email, "
                    "passport, address from raw.crm_clients where crm_client_id = 'E-1'"
                ).fetchall(),
                "helpdesk": conn.execute(
                    "select fio, phone, email, passport, contract_number, letter_scan_url "
                    "from raw.helpdesk_tickets where ticket_id = 'HD-E1'"
                ).fetchall(),
                "web": conn.execute(
                    "select last_name, ip, evidence_url, _payload -> 'person', "
                    "_payload -> 'consents' from raw.web_events where account_id = 'ACC-E1'"
                ).fetchall(),
                "partner": conn.execute(
                    "select last_name, phone, evidence_url from raw.partner_clients "
                    "where partner_client_id = 'B-E1'"
                ).fetchall(),
            }
            seen["report_after"] = report(conn)

            # 2. the execution again
            before = snapshot(conn)
            seen["second"] = execute_depersonalisation(conn)
            seen["second_unchanged"] = before == snapshot(conn)

        # 3. the next dbt run rebuilds staging (and everything after it) from raw
        run_dbt(url, "build", "--select", "staging", "intermediate", "marts")
        with psycopg.connect(url, autocommit=True) as conn:
            seen["pii_after_dbt"] = pii_hits(conn)
            seen["evidence_after_dbt"] = orlova_evidence(conn)
            seen["report_after_dbt"] = report(conn)

        # 4. identity resolution runs on the depersonalised records
        from assets.identity.assets import run_identity_resolution

        resource = ConsentCenterResource(
            home=str(root / "home"), landing_dir=str(landing), database_url=url
        )
        seen["identity"] = run_identity_resolution(resource, charts=False)
        with psycopg.connect(url, autocommit=True) as conn:
            seen["xref_after_identity"] = {
                (s, r): c
                for s, r, c in conn.execute(
                    "select source, source_record_id, client_id from consent.client_xref"
                )
            }
            seen["golden_after_identity"] = conn.execute(
                "select last_name, first_name, birth_date, phone, email "
                "from consent.golden_client where client_id = 'C-ORLOVA'"
            ).fetchone()

            # 5. a late CRM batch re-sends Orlova's card, personal data and all
            batch = crm_card_batch(landing, "2025-03-01", [CLIENTS[0]])
            load_batch(conn, "crm", batch)
            refresh_phone_numbers(conn)
        run_dbt(url, "build", "--select", "staging")  # the late batch typed, person and all
        with psycopg.connect(url, autocommit=True) as conn:
            seen["pii_late_batch"] = pii_hits(conn)
            seen["late"] = execute_depersonalisation(conn)
            seen["pii_after_late"] = pii_hits(conn)
            seen["staged_after_late"] = staged_versus_base(conn)
            seen["audit_after_late"] = conn.execute(
                "select to_jsonb(a) from consent.depersonalisation_audit a"
            ).fetchall()
        yield seen


def test_an_erase_request_with_retention_over_is_due_and_only_that_one(story):
    rows = story["report"]
    assert {key: row["state"] for key, row in rows.items()} == {
        "C-ORLOVA": "due",
        "C-BELOV": "held",
        "C-TITOV": "held",
        "C-ZUEVA": "held",
        "HD-E5": "held",
    }
    orlova = rows["C-ORLOVA"]
    assert orlova["request_id"] == "HD-E1"
    assert orlova["request_ids"] == ["HD-E1"]
    assert orlova["hold_reason"] is None and orlova["holds"] == []
    # retention of the deposit closed six years ago ended a year ago: allowed since the letter
    assert _moment(orlova["allowed_from"]) == TICKETS[0][1]
    assert orlova["retention_years"] == 5


def test_a_contract_closed_two_years_ago_holds_until_closing_plus_five_years(story):
    belov = story["report"]["C-BELOV"]
    assert belov["hold_reason"] == "contract_retention"
    assert belov["hold_reference"] == "KR-2019-0202"
    ends = BELOV_CONTRACT_CLOSED.replace(year=BELOV_CONTRACT_CLOSED.year + 5)
    assert _moment(belov["hold_until"]) == ends
    assert _moment(belov["allowed_from"]) == ends
    assert belov["executed_at"] is None


def test_an_open_contract_holds_with_no_end(story):
    titov = story["report"]["C-TITOV"]
    assert titov["hold_reason"] == "contract_open"
    assert titov["hold_reference"] == "CARD-2023-0303"
    assert titov["hold_until"] is None
    assert titov["allowed_from"] is None


def test_a_consent_given_after_the_request_holds_while_it_lasts(story):
    zueva = story["report"]["C-ZUEVA"]
    assert zueva["hold_reason"] == "consent_after_request"
    assert zueva["hold_reference"] == "marketing/email"
    # ads_email runs 36 months from the web form (from 29 February: to 28 February)
    ends = _plus_years(ZUEVA_CONSENT_AT, 3)
    assert _moment(zueva["hold_until"]) == ends


def test_a_letter_nobody_could_attribute_is_held_not_erased(story):
    unknown = story["report"]["HD-E5"]
    assert unknown["client_id"] is None
    assert unknown["hold_reason"] == "client_unresolved"


def test_the_due_client_is_depersonalised_everywhere_but_the_others_are_not(story):
    assert story["first"]["executed_clients"] == ["C-ORLOVA"]
    assert story["first"]["records"] == 4
    before, after = story["pii_before"], story["pii_after"]
    for relation in ("raw.crm_clients", "raw.web_events", "raw.helpdesk_tickets",
                     "raw.partner_clients", "consent.golden_client",
                     "consent.dq_rejections"):  # fmt: skip
        assert before[relation] > 0, relation
    assert after == dict.fromkeys(after, 0)
    assert story["others_after"] == story["others_before"]
    pseudonyms = {p for *_, p in story["records"]}
    assert {(s, r) for s, r, _, _ in story["records"]} == ORLOVA_RECORDS
    assert len(pseudonyms) == 1
    (pseudonym,) = pseudonyms
    assert pseudonym.startswith("Anon") and pseudonym[4:].isdigit() and len(pseudonym) == 36
    golden = story["golden_after"]
    assert golden[:7] == ("C-ORLOVA", pseudonym, None, None, None, None, None)


def test_raw_rows_keep_their_evidence_and_lose_the_person(story):
    raw = story["raw_after"]
    pseudonym = story["records"][0][3]
    assert raw["crm"] == [(pseudonym, "", "", "", "", "", "", "")]
    fio, phone, email, passport, contract, scan = raw["helpdesk"][0]
    assert (fio, phone, email, passport) == (pseudonym, "", "", "")
    assert contract == "DEP-2015-0101"
    assert scan == "https://scans.example.ru/letters/HD-E1.pdf"
    (web,) = raw["web"]
    assert web[:3] == (pseudonym, None, "https://logs.example.ru/EV-E1")
    assert web[3] == {
        "last_name": pseudonym,
        "first_name": None,
        "middle_name": None,
        "birth_date": None,
        "phone": None,
        "email": None,
    }
    assert web[4][0]["wording_sha256"] == ADS_EMAIL_SHA  # the consent itself is evidence
    assert raw["partner"] == [(pseudonym, "", "https://partners.example.ru/BETA/B-E1")]


def test_consent_evidence_is_kept_through_the_execution_and_the_next_rebuild(story):
    evidence = story["evidence_before"]
    assert len(evidence) >= 4
    urls = {row[4] for row in evidence}
    assert "https://logs.example.ru/EV-E1" in urls
    assert "https://scans.example.ru/letters/HD-E1.pdf" in urls
    assert "https://partners.example.ru/BETA/B-E1" in urls
    assert story["evidence_after"] == evidence
    assert story["evidence_after_dbt"] == evidence


def test_one_audit_row_per_client_with_ids_and_counts_only(story):
    (audit,) = [row for (row,) in story["audit"]]
    assert audit["client_id"] == "C-ORLOVA"
    assert audit["request_ids"] == ["HD-E1"]
    assert audit["source_records"] == 4
    assert audit["rows_pseudonymised"] == {
        "consent.dq_rejections": 1,
        "consent.golden_client": 1,
        "raw.crm_clients": 1,
        "raw.helpdesk_tickets": 1,
        "raw.partner_clients": 1,
        "raw.web_events": 1,
    }
    assert not any(s in json.dumps(audit, ensure_ascii=False) for s in ORLOVA_TEXT)
    assert story["report_after"]["C-ORLOVA"]["state"] == "done"


def test_staging_is_erased_exactly_as_typing_the_erased_raw_rows_again_would_type_them(story):
    # every staged table against its base view (raw parsed now), row for row, both ways
    assert story["staged_after"] == dict.fromkeys(story["staged_after"], (0, 0))
    assert story["staged_after_late"] == dict.fromkeys(story["staged_after_late"], (0, 0))
    assert story["first"]["rows"]["staging.stg_crm__clients"] == 1
    assert story["late"]["rows"]["staging.stg_crm__clients"] == 1


def test_a_second_execution_changes_nothing(story):
    assert story["second"] == {
        "executed_clients": [],
        "reapplied_clients": [],
        "records": 0,
        "rows": {},
    }
    assert story["second_unchanged"]


def test_the_next_dbt_run_does_not_bring_the_personal_data_back(story):
    assert story["pii_after_dbt"] == dict.fromkeys(story["pii_after_dbt"], 0)
    done = story["report_after_dbt"]["C-ORLOVA"]
    assert done["state"] == "done" and done["executed_at"] is not None
    assert story["report_after_dbt"]["C-BELOV"]["state"] == "held"


def test_identity_resolution_keeps_the_depersonalised_records_on_their_client(story):
    xref = story["xref_after_identity"]
    assert {key: xref[key] for key in ORLOVA_RECORDS} == dict.fromkeys(ORLOVA_RECORDS, "C-ORLOVA")
    assert story["identity"]["pinned_records"] == 4
    pseudonym = story["records"][0][3]
    assert story["golden_after_identity"] == (pseudonym, None, None, None, None)


def test_a_late_batch_resending_the_card_is_depersonalised_too(story):
    assert story["pii_late_batch"]["raw.crm_clients"] == 1
    assert story["pii_late_batch"]["staging.stg_crm__clients"] == 1
    assert story["late"]["executed_clients"] == []
    assert story["late"]["reapplied_clients"] == ["C-ORLOVA"]
    assert story["pii_after_late"] == dict.fromkeys(story["pii_after_late"], 0)
    (audit,) = [row for (row,) in story["audit_after_late"]]
    assert audit["reapplied_at"] is not None
    assert audit["rows_reapplied"]["raw.crm_clients"] == 1


# ---------------------------------------------------------------------------------------------
# The generator's feeds, checked against its truth


def _plus_years(moment: datetime, years: int) -> datetime:
    day = min(moment.day, 28) if (moment.month, moment.day) == (2, 29) else moment.day
    return moment.replace(year=moment.year + years, day=day)


def _rows(paths, bad: set[tuple[str, str, str]]) -> list[dict[str, str]]:
    """Rows of the generated CSV files, minus those the generator wrote broken on purpose."""
    rows = []
    for path in sorted(paths):
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                if (path.parent.name, path.name, str(reader.line_num)) not in bad:
                    rows.append(row)
    return rows


def _newest(rows: list[dict[str, str]], key: str) -> dict[str, dict[str, str]]:
    """The newest row of every id: rows come in batch and line order, a later one replaces."""
    newest = {}
    for row in rows:
        newest[row[key]] = row
    return newest


def _ingest_bad(landing: Path) -> set[tuple[str, str, str]]:
    """(batch, file, line) of every row the generator wrote for ingestion to reject."""
    return {
        (r["batch_id"], r["file_name"], r["line_number"])
        for r in _rows([landing / "truth" / "bad_rows.csv"], set())
        if r["stage"] == "ingest"
    }


def _generated(landing: Path) -> tuple[dict, list, dict]:
    """The truth's person of every record, the newest row of every contract, of every ticket."""
    truth, bad = landing / "truth", _ingest_bad(landing)
    person = {
        (r["source"], r["source_record_id"]): r["person_id"]
        for r in _rows([truth / "person_xref.csv"], set())
    }
    contracts = _newest(_rows(landing.glob("crm/*/contracts.csv"), bad), "contract_id")
    tickets = _newest(_rows(landing.glob("helpdesk/*/tickets.csv"), bad), "ticket_id")
    return person, list(contracts.values()), tickets


def expected_contract_holds(landing: Path) -> dict[str, tuple[str, set[tuple[str, str]]]]:
    """erase_data ticket -> (person, the contract holds the truth implies today)."""
    person, contracts, tickets = _generated(landing)
    holds: dict[str, set[tuple[str, str]]] = {}
    for row in contracts:
        owner = person.get(("crm", row["crm_client_id"]))
        if row["closed_at"] == "":
            holds.setdefault(owner, set()).add(("contract_open", row["contract_number"]))
        elif _plus_years(datetime.fromisoformat(row["closed_at"]), 5) > NOW:
            holds.setdefault(owner, set()).add(("contract_retention", row["contract_number"]))
    expected = {}
    for row in tickets.values():
        if row["request_type"] == "erase_data":
            owner = person[("helpdesk", row["ticket_id"])]
            expected[row["ticket_id"]] = (owner, holds.get(owner, set()))
    return expected


# The generated feeds are of fixed dates (2019-2024), and so is every term they carry; from
# 2040 on every consent they could give has run out (the longest term is 120 months) and every
# closed contract's retention has ended: only open contracts hold an erasure, and each request's
# due date is the later of the request and the end of its client's last retention, which the
# test works out from the feeds alone. That story runs at this instant of its own.
AFTER_EVERY_TERM = datetime(2040, 1, 1, 12, 0)


def expected_erasure_after_every_term(landing: Path) -> dict[str, dict]:
    """Every erase request's client -> what the report must say at AFTER_EVERY_TERM, read from the
    feeds and the truth's identity only: its requests (by receipt), its open contracts, its due
    date (None while a contract is open), and every record of the client."""
    person, contracts, tickets = _generated(landing)
    bad = _ingest_bad(landing)
    # no consent of the feeds can outlive 2040: none runs longer than 120 months from an instant
    # the feeds carry (a partner's own end date included), nor any retention of 5 years
    terms = [
        int(r["term_months"])
        for name in ("consent_types.csv", "product_matrix.csv")
        for r in _rows(landing.glob(f"catalog/*/{name}"), set())
        if r["term_months"]
    ]
    instants = [
        row[field]
        for pattern, fields in (
            ("crm/*/contracts.csv", ("signed_at", "closed_at")),
            ("crm/*/consent_flags.csv", ("set_at",)),
            ("helpdesk/*/tickets.csv", ("received_at", "closed_at")),
            ("partner/*/partner_clients.csv", ("obtained_at", "valid_until")),
        )
        for row in _rows(landing.glob(pattern), bad)
        for field in fields
        if row[field]
    ]
    for path in landing.glob("web/*/events.jsonl"):
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if (path.parent.name, path.name, str(number)) not in bad:
                instants.append(json.loads(line)["occurred_at"])
    latest = max(datetime.fromisoformat(value) for value in instants)
    assert max(terms) == 120
    assert _plus_years(latest, 10) < AFTER_EVERY_TERM

    expected: dict[str, dict] = {}
    for row in sorted(tickets.values(), key=lambda r: (r["received_at"], r["ticket_id"])):
        if row["request_type"] == "erase_data":
            owner = person[("helpdesk", row["ticket_id"])]
            client = expected.setdefault(
                owner,
                {"request_ids": [], "open": set(), "retention_ends": [], "records": set()},
            )
            client["request_ids"].append(row["ticket_id"])
            client.setdefault("first_received", datetime.fromisoformat(row["received_at"]))
    for row in contracts:
        owner = person.get(("crm", row["crm_client_id"]))
        if owner in expected:
            if row["closed_at"] == "":
                expected[owner]["open"].add(row["contract_number"])
            else:
                closed = datetime.fromisoformat(row["closed_at"])
                expected[owner]["retention_ends"].append(_plus_years(closed, 5))
    for (source, record), owner in person.items():
        if owner in expected:
            expected[owner]["records"].add((source, record))
    for client in expected.values():
        client["due_from"] = (
            None if client["open"] else max([client["first_received"], *client["retention_ends"]])
        )
    return expected


@pytest.fixture(scope="module")
def generated_landing(tmp_path_factory) -> Path:
    from sources.generator import GeneratorConfig, generate

    landing = tmp_path_factory.mktemp("generated-erasure") / "landing"
    generate(landing, GeneratorConfig(clients=3_000, seed=11))
    return landing


@contextlib.contextmanager
def _derived(server_url: str, landing: Path, as_of: datetime | None = None):
    """A database with the feeds loaded and derived (at `as_of`, default the session's clock),
    the truth's person behind every record as the golden client (this checks the report and the
    execution, not identity resolution)."""
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn:
            write_calendar(conn, max(NOW, as_of or NOW).year + 1)
            with (
                open(landing / "truth" / "person_xref.csv", encoding="utf-8") as handle,
                (
                    conn.cursor().copy(
                        "copy consent.client_xref (source, source_record_id, client_id) "
                        "from stdin (format csv, header true)"
                    )
                ) as copy,
            ):
                copy.write(handle.read())
        run_dbt(
            url,
            "build",
            "--select",
            "intermediate",
            "marts",
            as_of=as_of.replace(tzinfo=MOSCOW) if as_of else None,
        )
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


@pytest.fixture(scope="module")
def generated(server_url, generated_landing):
    with _derived(server_url, generated_landing) as conn:
        yield generated_landing, conn


@pytest.fixture(scope="module")
def generated_after_every_term(server_url, generated_landing):
    """The generated feeds derived at AFTER_EVERY_TERM: the report, then one execution."""
    seen = {"landing": generated_landing}
    with _derived(server_url, generated_landing, AFTER_EVERY_TERM) as conn:
        seen["report"] = [
            row
            for (row,) in conn.execute("select to_jsonb(r) from consent.report_depersonalisation r")
        ]
        seen["result"] = execute_depersonalisation(conn)
        seen["records"] = set(
            conn.execute(
                "select source, source_record_id, client_id from consent.depersonalised_records"
            ).fetchall()
        )
        seen["audit"] = [
            row
            for (row,) in conn.execute("select to_jsonb(a) from consent.depersonalisation_audit a")
        ]
        seen["personal_left"] = dict(
            conn.execute(
                """
                select p.client_id,
                       count(*) filter (where last_name !~ '^Anon[0-9]{32}$' or phone is not null
                                        or email is not null or birth_date is not null)
                from (select x.client_id, s.last_name, s.phone, s.email, s.birth_date
                      from staging.stg_crm__clients s
                      join consent.client_xref x
                        on x.source = 'crm' and x.source_record_id = s.source_record_id
                      union all
                      select x.client_id, s.fio, s.phone, s.email, s.birth_date
                      from staging.stg_helpdesk__tickets s
                      join consent.client_xref x
                        on x.source = 'helpdesk' and x.source_record_id = s.source_record_id) p
                group by p.client_id
                """
            ).fetchall()
        )
        seen["pseudonymised_crm"] = conn.execute(
            "select count(*) from staging.stg_crm__clients where last_name ~ '^Anon[0-9]{32}$'"
        ).fetchone()[0]
        seen["crm_rows_of_records"] = conn.execute(
            "select count(*) from staging.stg_crm__clients s join consent.depersonalised_records d "
            "on d.source = 'crm' and d.source_record_id = s.source_record_id"
        ).fetchone()[0]
        yield seen


def test_every_generated_erase_request_is_reported_with_the_holds_its_truth_implies(generated):
    landing, conn = generated
    expected = expected_contract_holds(landing)
    assert len(expected) >= 10
    rows = {
        ticket: row
        for (row,) in conn.execute("select to_jsonb(r) from consent.report_depersonalisation r")
        for ticket in row["request_ids"]
    }
    assert set(rows) == set(expected)
    states = []
    for ticket, (person, holds) in expected.items():
        row = rows[ticket]
        assert row["client_id"] == person, ticket
        reported = {(h["reason"], h["reference"]) for h in row["holds"]}
        assert {h for h in reported if h[0].startswith("contract_")} == holds, ticket
        assert row["state"] == ("held" if reported else "due"), ticket
        for hold in row["holds"]:
            if hold["reason"] == "contract_retention":
                assert _moment(hold["until"]) > NOW
        states.append(row["state"])
    assert {"held", "due"} <= set(states)


def test_after_every_term_only_open_contracts_hold_and_each_due_date_is_worked_out(
    generated_after_every_term,
):
    seen = generated_after_every_term
    expected = expected_erasure_after_every_term(seen["landing"])
    due = {who: c for who, c in expected.items() if c["due_from"] is not None}
    held = {who: c for who, c in expected.items() if c["due_from"] is None}
    # both kinds, and due dates of both kinds: the request itself, or a retention that ended
    # after it
    assert len(due) >= 3 and len(held) >= 3
    assert any(c["due_from"] == c["first_received"] for c in due.values())
    assert any(c["due_from"] > c["first_received"] for c in due.values())
    rows = {row["client_id"]: row for row in seen["report"]}
    assert set(rows) == set(expected)
    for who, client in expected.items():
        row = rows[who]
        assert row["request_ids"] == client["request_ids"], who
        assert _moment(row["received_at"]) == client["first_received"], who
        assert {(h["reason"], h["reference"], h["until"]) for h in row["holds"]} == {
            ("contract_open", number, None) for number in client["open"]
        }, who
        assert row["state"] == ("held" if client["open"] else "due"), who
        assert _moment(row["allowed_from"]) == client["due_from"], who


def test_the_due_generated_clients_and_only_they_are_depersonalised_record_by_record(
    generated_after_every_term,
):
    seen = generated_after_every_term
    expected = expected_erasure_after_every_term(seen["landing"])
    due = sorted(who for who, c in expected.items() if c["due_from"] is not None)
    assert due
    assert seen["result"]["executed_clients"] == due
    # exactly every record of every due client, and nobody else's
    assert seen["records"] == {
        (source, record, who) for who in due for source, record in expected[who]["records"]
    }
    assert seen["result"]["records"] == len(seen["records"])
    audit = {row["client_id"]: row for row in seen["audit"]}
    assert set(audit) == set(due)
    for who in due:
        assert audit[who]["request_ids"] == expected[who]["request_ids"], who
        assert _moment(audit[who]["allowed_from"]) == expected[who]["due_from"], who
        assert audit[who]["source_records"] == len(expected[who]["records"]), who
    # no name, phone, e-mail or birth date is left on a due client's CRM or helpdesk rows; the
    # others keep theirs
    left = seen["personal_left"]  # every one of them has a helpdesk row, the letter
    assert set(expected) <= set(left)
    assert all(left[who] == 0 for who in due)
    assert all(left[who] > 0 for who in expected if who not in due)
    # and no CRM row outside the listed records carries a pseudonym
    assert seen["pseudonymised_crm"] == seen["crm_rows_of_records"] > 0
