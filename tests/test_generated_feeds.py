"""The whole product on generated feeds, checked against the generator's truth.

One `consent-center run` (real ingestion, dbt, splink, GX, reports) over a generated landing
zone of a few thousand clients; then the answers and reports are compared with what the
generator knows: every sampled expected status must match (DESIGN section 7 through real
identity resolution), every request in the helpdesk feed must be in the deadline report with
a deadline on the production calendar, and the reports reach the DPOs' folder.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from assets.consent_checks import compare_expected_statuses
from sources.generator import GeneratorConfig, generate

REQUESTS = ("revoke_consent", "restrict_processing", "erase_data")


@pytest.fixture(scope="module")
def generated_run(server_url, tmp_path_factory):
    from tests.conftest import fresh_database

    root = tmp_path_factory.mktemp("generated")
    landing = root / "landing"
    generate(landing, GeneratorConfig(clients=1_500, seed=21))
    with fresh_database(server_url) as url:
        env = {
            **os.environ,
            "CONSENT_HOME": str(root / "home"),
            "CONSENT_LANDING_DIR": str(landing),
            "CONSENT_DATABASE_URL": url,
            "COLUMNS": "120",
        }
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with psycopg.connect(url, autocommit=True) as conn:
            yield landing, root / "home", conn, done.stdout


def _loaded_tickets(landing: Path) -> dict[str, str]:
    """ticket_id -> request_type of every helpdesk row the generator did not write broken."""
    with open(landing / "truth" / "bad_rows.csv", encoding="utf-8") as handle:
        bad = {
            (r["batch_id"], r["line_number"])
            for r in csv.DictReader(handle)
            if r["source"] == "helpdesk" and r["stage"] == "ingest"
        }
    tickets = {}
    for path in sorted(landing.glob("helpdesk/*/tickets.csv")):
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                if (path.parent.name, str(reader.line_num)) not in bad:
                    tickets[row["ticket_id"]] = row["request_type"]
    return tickets


def test_no_answer_allows_a_contact_the_truth_forbids(generated_run):
    """Through real identity resolution some records cannot be tied to their person (a partner
    record with only a name and a phone, a web account with only a name and an e-mail): those
    answers may differ from the truth, but only towards caution, never towards a contact."""
    landing, _, conn, _ = generated_run
    agreement = compare_expected_statuses(conn, landing / "truth" / "expected_status.csv")
    assert agreement["questions"] > 300
    assert agreement["unsafe"] == 0, agreement["mismatches"]
    assert agreement["matched"] >= 0.99 * agreement["questions"], agreement["mismatches"]


def test_every_revocation_and_erase_request_has_a_working_day_deadline(generated_run):
    landing, _, conn, _ = generated_run
    requests = {t for t, kind in _loaded_tickets(landing).items() if kind in REQUESTS}
    rows = conn.execute(
        """
        select r.request_id, r.received_at, r.deadline_day, c.is_working_day, r.state
        from consent.report_revocation_deadlines r
        left join consent.production_calendar c on c.day = r.deadline_day
        where r.source = 'helpdesk'
        """
    ).fetchall()
    reported = {r[0] for r in rows}
    assert requests and requests <= reported
    for request_id, received_at, deadline_day, working, state in rows:
        assert working, request_id
        # 10 working days: at least two weeks, never more than a month even over New Year
        assert received_at.date() + timedelta(days=12) <= deadline_day, request_id
        assert deadline_day <= received_at.date() + timedelta(days=31), request_id
        assert state in ("on_time", "late", "open")


def test_expiring_report_agrees_with_the_golden_table(generated_run):
    from tests.conftest import clock

    _, _, conn, _ = generated_run
    wrong = conn.execute(
        """
        select count(*) from consent.report_expiring r
        left join consent.golden_consent g using (client_id, purpose, channel, partner_code)
        where (r.state = 'expiring' and (g.status is distinct from 'granted'
                                         or g.valid_until is distinct from r.expires_at))
           or (r.state = 'expired' and r.expires_at > %s)
        """,
        (clock(),),  # the run's instant (CONSENT_NOW, tests/conftest.py), not the database's
    ).fetchone()[0]
    assert wrong == 0


def test_the_reports_and_the_change_feed_reach_their_readers(generated_run):
    _, home, conn, _ = generated_run
    from assets.exports import REPORTS

    for report in REPORTS:
        path = home / "reports" / f"{report}.csv"
        assert path.exists(), report
        rows = conn.execute(f"select count(*) from consent.{report}").fetchone()[0]
        assert len(path.read_text(encoding="utf-8").splitlines()) == rows + 1
    changes, golden = conn.execute(
        "select (select count(*) from consent.consent_change), "
        "(select count(*) from consent.golden_consent)"
    ).fetchone()
    assert changes >= golden > 0


def test_grants_only_keys_get_the_history_the_full_rules_give(generated_run, tmp_path, monkeypatch):
    """consent_history computes keys that carry only grants by a cheaper path; on real feeds
    every interval of every key must be what the full rules (every key through them) give."""
    from psycopg.conninfo import make_conninfo

    from pipelines.dbt_cli import run_dbt

    _, _, conn, _ = generated_run
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    run_dbt(
        # the DSN psycopg shows leaves the password out: the embedded server needs it
        make_conninfo(conn.info.dsn, password=conn.info.password),
        "compile",
        "--select",
        "int_consent_history__half_0",
        "int_consent_history__half_1",
        "--vars",
        "{grants_only_path: false}",
    )
    compiled = sorted((tmp_path / "target" / "compiled").rglob("int_consent_history__half_*.sql"))
    assert len(compiled) == 2
    full_rules = " union all ".join(f"select * from ({path.read_text()}) h" for path in compiled)
    grants_only_keys, fast_rows = conn.execute(
        "select (select count(distinct (client_id, purpose, channel, partner_code)) "
        "        from staging.int_consent_key_events where grants_only), "
        "(select count(*) from (select * from staging.int_consent_history__half_0 union all "
        "                       select * from staging.int_consent_history__half_1) h "
        "  where exists (select from staging.int_consent_key_events k where k.grants_only "
        "                and (k.client_id, k.purpose, k.channel, k.partner_code) "
        "                    = (h.client_id, h.purpose, h.channel, h.partner_code)))"
    ).fetchone()
    # most keys carry grants only, and each has at least one interval by the cheaper path
    assert grants_only_keys > 1_000 and fast_rows >= grants_only_keys
    # both compared as stored: a channel-uniform group's keys under channel `any`
    stored = (
        "select * from staging.int_consent_history__half_0 "
        "union all select * from staging.int_consent_history__half_1"
    )
    only_full, only_ours = conn.execute(
        f"with full_rules as ({full_rules}), ours as ({stored}) "
        "select (select count(*) from (select * from full_rules except all "
        "                              select * from ours) a), "
        "       (select count(*) from (select * from ours except all "
        "                              select * from full_rules) b)"
    ).fetchone()
    assert (only_full, only_ours) == (0, 0)


def test_channel_uniform_keys_are_stored_once_and_shown_for_every_channel(generated_run):
    """A client x purpose x partner with nothing but `any` grants is stored once under `any`;
    the public history shows it as six channel keys with the same intervals."""
    _, _, conn, _ = generated_run
    stored_any, stored_concrete, shown, shown_any = conn.execute(
        """
        with stored as (
            select channel from staging.int_consent_history__half_0
            union all select channel from staging.int_consent_history__half_1
        )
        select (select count(*) from stored where channel = 'any'),
               (select count(*) from stored where channel <> 'any'),
               (select count(*) from consent.consent_history),
               (select count(*) from consent.consent_history where channel = 'any')
        """
    ).fetchone()
    assert stored_any > 1_000 and stored_concrete > 1_000
    assert shown == stored_concrete + 6 * stored_any and shown_any == 0
    # no key is both stored whole and per channel
    overlapping = conn.execute(
        """
        select count(*) from staging.int_consent_key_events w
        where w.channel = 'any'
          and exists (select from staging.int_consent_key_events k
                      where k.client_id = w.client_id and k.purpose = w.purpose
                        and k.partner_code = w.partner_code and k.channel <> 'any')
        """
    ).fetchone()[0]
    assert overlapping == 0
