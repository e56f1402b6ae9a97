"""The windows a DPO sets on two reports, at their edges, on a real database with real dbt.

* `report_expiring` lists the consents that end within the next N days and those that ended in
  the last N (README "Reports"; N is CONSENT_EXPIRING_DAYS, else the dbt var expiring_days,
  which wins, else 30). Eleven partner consents end 31, 30, 8, 7 and 2 days after the
  session's clock (CONSENT_NOW), at that very instant, and 2, 7, 8, 30 and 31 days before it.
  The window is (now - N days, now + N days]: a consent ending exactly N days ahead is listed
  as expiring, one that ends at this instant has expired, one that ended exactly N days ago
  has left the list.
* `report_depersonalisation` holds an erase request while a contract closed less than
  `retention_years` ago (dbt var, default 5) and makes it due once that many years have passed
  (README "Depersonalisation", rule 8). Five clients wrote asking to be erased a month ago;
  each one's only contract closed 6 years ago, exactly 5 years ago, 5 years less a day ago,
  4 years ago and 2 years ago.

Every date is relative to the session's clock, so the stories hold at any CONSENT_NOW; the
expectations are worked out here from the rule as the README states it, not read from the
product. Identity is given, as splink would write it; one dbt build of the consent models per
module, then each test rebuilds only the report it reads, with its own window.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from assets.calendar import write_calendar
from pipelines.answers import MOSCOW
from pipelines.dbt_cli import run_dbt
from sources import crm, helpdesk, partner
from tests.conftest import EXAMPLES, clock, fresh_database, load_and_stage
from tests.landing_batches import csv_text

# "now": the session's clock, the instant dbt derives at, in Moscow wall time
NOW = clock().astimezone(MOSCOW).replace(tzinfo=None)

# ---------------------------------------------------------------------- expiring consents
#: days from now to the end of each partner consent (advertising SMS, with a valid_until)
ENDS_IN_DAYS = [31, 30, 8, 7, 2, 0, -2, -7, -8, -30, -31]


def ending(days: int) -> str:
    """The partner record whose consent ends `days` from now."""
    return f"BETA:END{days:+03d}"


def expected_window(days: int) -> dict[str, str]:
    """The README's rule, read on its own: ending within the next N days, or in the last N."""
    listed = {}
    for d in ENDS_IN_DAYS:
        if 0 < d <= days:
            listed[ending(d)] = "expiring"
        elif -days < d <= 0:
            listed[ending(d)] = "expired"
    return listed


# ----------------------------------------------------------------- retention of erase requests
def years_before(moment: datetime, years: int) -> datetime:
    """The same wall-clock instant `years` calendar years earlier (29 February: the 28th)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def years_after(moment: datetime, years: int) -> datetime:
    return years_before(moment, -years)


ASKED_AT = NOW - timedelta(days=30)  # every erase request, a month ago
#: client -> when their only contract closed. (On 29 February no instant is exactly five years
#: earlier: "exactly" is then 28 February, a day more.)
CLOSED = {
    "C-SIX-YEARS": years_before(NOW, 6),
    "C-EXACTLY-FIVE": years_before(NOW, 5),
    "C-FIVE-LESS-A-DAY": years_before(NOW, 5) + timedelta(days=1),
    "C-FOUR-YEARS": years_before(NOW, 4),
    "C-TWO-YEARS": years_before(NOW, 2),
}


def expected_retention(years: int) -> dict[str, tuple]:
    """client -> (state, hold_until, allowed_from), by the rule: held while closed + years > now."""
    expected = {}
    for client_id, closed in CLOSED.items():
        ends = years_after(closed, years)
        if ends > NOW:
            expected[client_id] = ("held", ends, ends)
        else:
            expected[client_id] = ("due", None, max(ASKED_AT, ends))
    return expected


def iso(moment: datetime) -> str:
    return moment.isoformat()


def _batch(landing: Path, source: str, files: dict[str, str]) -> None:
    # the batch arrives "now", at the session's clock (its _SUCCESS time is its arrival)
    folder = landing / source / NOW.strftime("%Y-%m-%d")
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "_SUCCESS").touch()
    os.utime(folder / "_SUCCESS", (clock().timestamp(), clock().timestamp()))


def write_landing(landing: Path) -> list[tuple[str, str, str]]:
    """The landing zone; returns who is who (source, record, client)."""
    shutil.copytree(EXAMPLES / "catalog", landing / "catalog")
    consents = []
    for days in ENDS_IN_DAYS:
        ends = NOW + timedelta(days=days)
        consents.append(
            {
                "partner_code": "BETA",
                "partner_client_id": ending(days).removeprefix("BETA:"),
                "last_name": "Клиентов",
                "consent_code": "ads_sms",
                "granted": "true",
                "obtained_at": iso(ends - timedelta(days=200)),
                "valid_until": iso(ends),
                "agreement_id": "AG-BETA-1",
                "evidence_url": f"https://partners.example.ru/{ending(days)}",
            }
        )
    _batch(
        landing,
        "partner",
        {"partner_clients.csv": csv_text(consents, partner.PARTNER_CLIENTS.column_names)},
    )
    records = {client_id: f"K-{n}" for n, client_id in enumerate(CLOSED, start=1)}
    _batch(
        landing,
        "crm",
        {
            "clients.csv": csv_text(
                [
                    {"crm_client_id": k, "last_name": "Клиентов", "updated_at": iso(ASKED_AT)}
                    for k in records.values()
                ],
                crm.CLIENTS.column_names,
            ),
            "contracts.csv": csv_text(
                [
                    {
                        "contract_id": f"D-{k}",
                        "crm_client_id": k,
                        "contract_number": f"KR-{k}",
                        "system_code": "LOANS",
                        "product_type": "LOAN",
                        "signed_at": iso(years_before(CLOSED[client_id], 3)),
                        "closed_at": iso(CLOSED[client_id]),
                        "scan_url": f"https://scans.example.ru/KR-{k}.pdf",
                    }
                    for client_id, k in records.items()
                ],
                crm.CONTRACTS.column_names,
            ),
            "consent_flags.csv": csv_text([], crm.CONSENT_FLAGS.column_names),
        },
    )
    _batch(
        landing,
        "helpdesk",
        {
            "tickets.csv": csv_text(
                [
                    {
                        "ticket_id": f"HD-{k}",
                        "received_at": iso(ASKED_AT),
                        "request_type": "erase_data",
                        "fio": "Клиентов К.",
                        "contract_number": f"KR-{k}",
                        "letter_scan_url": f"https://scans.example.ru/letters/HD-{k}.pdf",
                    }
                    for k in records.values()
                ],
                helpdesk.TICKETS.column_names,
            )
        },
    )
    xref = [("partner", ending(d), f"C-END{d:+03d}") for d in ENDS_IN_DAYS]
    for client_id, k in records.items():
        xref += [("crm", k, client_id), ("helpdesk", f"HD-{k}", client_id)]
    return xref


@pytest.fixture(scope="module")
def database(server_url, tmp_path_factory):
    landing = tmp_path_factory.mktemp("report-windows") / "landing"
    xref = write_landing(landing)
    with fresh_database(server_url) as url:
        load_and_stage(url, landing)
        with psycopg.connect(url, autocommit=True) as conn:
            write_calendar(conn, NOW.year + 1)
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into consent.client_xref (source, source_record_id, client_id) "
                    "values (%s, %s, %s)",
                    xref,
                )
        run_dbt(url, "build", "--select", "intermediate", "marts")
        yield url


def expiring(url: str, *dbt_args: str) -> dict[str, str]:
    """Rebuild report_expiring (with the environment as it is now), then read it."""
    run_dbt(url, "build", "--select", "report_expiring", *dbt_args)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select source_record_id, state, expires_at from consent.report_expiring"
        ).fetchall()
    for record, _, expires_at in rows:  # each row names the instant its consent ends
        days = int(record.removeprefix("BETA:END"))
        assert expires_at == (NOW + timedelta(days=days)).replace(tzinfo=MOSCOW), record
    return {record: state for record, state, _ in rows}


def test_consent_expiring_days_sets_the_window_at_its_edges(database, monkeypatch):
    monkeypatch.setenv("CONSENT_EXPIRING_DAYS", "7")
    listed = expiring(database)
    assert listed == {
        ending(2): "expiring",
        ending(7): "expiring",  # exactly seven days ahead: listed
        ending(0): "expired",  # ends at this very instant: expired, no longer expiring
        ending(-2): "expired",  # exactly seven days ago: left the list
    }
    assert listed == expected_window(7)


def test_without_consent_expiring_days_the_window_is_thirty_days(database, monkeypatch):
    monkeypatch.delenv("CONSENT_EXPIRING_DAYS", raising=False)
    listed = expiring(database)
    assert listed == expected_window(30)
    assert listed[ending(30)] == "expiring" and ending(31) not in listed
    assert listed[ending(-8)] == "expired" and ending(-30) not in listed


def test_a_wider_window_lists_more_and_the_dbt_var_wins_over_the_environment(database, monkeypatch):
    monkeypatch.setenv("CONSENT_EXPIRING_DAYS", "7")
    listed = expiring(database, "--vars", "{expiring_days: 8}")
    assert listed == expected_window(8)
    # one day more: the consent ending in 8 days is listed, the one that ended 7 days ago is back
    assert set(listed) - set(expected_window(7)) == {ending(8), ending(-7)}


def depersonalisation(url: str, *dbt_args: str) -> dict[str, tuple]:
    run_dbt(url, "build", "--select", "report_depersonalisation", *dbt_args)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select client_id, state, hold_reason, hold_until, allowed_from, retention_years "
            "from consent.report_depersonalisation"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def _moscow(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=MOSCOW) if moment is not None else None


@pytest.mark.parametrize("years", [None, 3, 7], ids=["default-5", "3-years", "7-years"])
def test_retention_years_decides_which_erase_requests_are_due(database, years):
    args = () if years is None else ("--vars", f"{{retention_years: {years}}}")
    report = depersonalisation(database, *args)
    retention = 5 if years is None else years
    expected = expected_retention(retention)
    assert set(report) == set(expected)
    for client_id, (state, hold_until, allowed_from) in expected.items():
        got = report[client_id]
        assert got[0] == state, (client_id, got)
        assert got[1] == ("contract_retention" if state == "held" else None), client_id
        assert got[2] == _moscow(hold_until), client_id
        assert got[3] == _moscow(allowed_from), client_id
        assert got[4] == retention
    states = {client_id: got[0] for client_id, got in report.items()}
    if years is None:  # the default, at its edges
        assert states == {
            "C-SIX-YEARS": "due",
            "C-EXACTLY-FIVE": "due",  # five years have passed at this instant
            "C-FIVE-LESS-A-DAY": "held",  # until tomorrow
            "C-FOUR-YEARS": "held",
            "C-TWO-YEARS": "held",
        }
        assert report["C-FIVE-LESS-A-DAY"][3] == _moscow(NOW + timedelta(days=1))
    else:  # a period of its own moves the line
        due = {client_id for client_id, state in states.items() if state == "due"}
        assert due == (
            {"C-SIX-YEARS", "C-EXACTLY-FIVE", "C-FIVE-LESS-A-DAY", "C-FOUR-YEARS"}
            if years == 3
            else set()
        )
