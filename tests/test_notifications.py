"""Notifications: the morning digest and run-failure alerts, sent to a real local SMTP server.

The report tables are written by hand here (their dbt models are tested in test_reports): these
stories are about what the digest picks from them, what it never says, and how it travels.
"""

from collections.abc import Iterator
from email.message import EmailMessage

import psycopg
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    job,
    materialize,
    op,
)

from assets.notifications import email_digest
from pipelines.alerts import run_failure_alert
from pipelines.notifications import (
    NotificationSettingsError,
    build_digest,
    render_digest,
    send_digest,
    smtp_settings_from_env,
)
from pipelines.resources import ConsentCenterResource
from tests.conftest import clock, fresh_database
from tests.smtp_server import SMTP_VARIABLES, Mailbox, OsPortController

PERSON = "Иванова Мария Петровна"
PHONE = "+79161234567"

# the mail settings, and how near a deadline must be for the digest to name it
DIGEST_VARIABLES = (*SMTP_VARIABLES, "CONSENT_DIGEST_NEAR_DAYS")

# the report rows are dated relative to the session's clock (CONSENT_NOW, tests/conftest.py), the
# instant the digest is built at; reports_url sets it in the session that writes them
NOW = "current_setting('consent_test.now')::timestamptz"
REPORT_TABLES = f"""
create schema if not exists consent;
create table consent.report_revocation_deadlines (
    request_id text, client_id text, source text, source_record_id text, request text,
    received_at timestamptz, deadline_day date, deadline_at timestamptz,
    effective_in_golden_at timestamptz, state text);
create table consent.report_expiring (
    client_id text, purpose text, channel text, partner_code text, state text,
    expires_at timestamptz, source text, source_record_id text, process text,
    contract_number text, detail text, event_id text);

insert into consent.report_revocation_deadlines
select request_id, client_id, source, request_id, '{PERSON} {PHONE}: отзываю согласие',
       {NOW} + deadline - interval '14 days', ({NOW} + deadline)::date,
       {NOW} + deadline, applied, state
from (values
    ('HD-LATE',    'C-1',  'helpdesk', interval '-10 days', {NOW} - interval '5 days', 'late'),
    ('HD-NEAR',    null,   'helpdesk', interval '2 days',   null::timestamptz,          'open'),
    ('WEB-FAR',    null,   'web',      interval '20 days',  null,                       'open'),
    ('HD-ONTIME',  'C-2',  'helpdesk', interval '-30 days', {NOW} - interval '40 days', 'on_time'),
    ('CRM-STALE',  null,   'crm',      interval '-1 day',   null,                       'open')
) as r(request_id, client_id, source, deadline, applied, state);

insert into consent.report_expiring
select client_id, purpose, channel, null, state, {NOW} + due, 'crm', 'K-' || client_id,
       'contract', 'D-1', '{PERSON}, {PHONE}', 'E-' || client_id
from (values
    ('C-1', 'marketing', 'sms',   'expiring', interval '5 days'),
    ('C-2', 'marketing', 'email', 'expiring', interval '12 days'),
    ('C-3', 'marketing', 'sms',   'expired',  interval '-3 days')
) as e(client_id, purpose, channel, state, due);
"""


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    # bound to a port the OS assigns at bind time (no free-port probe to race with)
    controller = OsPortController(mailbox)
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def no_smtp(monkeypatch) -> None:
    for name in DIGEST_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def smtp_configured(no_smtp, smtp_server, monkeypatch) -> Mailbox:
    mailbox, port = smtp_server
    monkeypatch.setenv("CONSENT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CONSENT_SMTP_PORT", str(port))
    monkeypatch.setenv("CONSENT_SMTP_FROM", "consent-center@bank.example")
    monkeypatch.setenv("CONSENT_DIGEST_TO", "dpo@bank.example, legal@bank.example")
    return mailbox


@pytest.fixture(scope="module")
def reports_url(server_url) -> Iterator[str]:
    with fresh_database(server_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select set_config('consent_test.now', %s, false)", (clock().isoformat(),))
            conn.execute(REPORT_TABLES)
        yield url


def _digest(url: str, near_days: int = 3):
    with psycopg.connect(url, autocommit=True) as conn:
        return build_digest(conn, near_days=near_days)


def _digest_metadata(result) -> dict:
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == AssetKey(["reports", "email_digest"])
    return {key: value.value for key, value in event.materialization.metadata.items()}


def _whole_text(message: EmailMessage) -> str:
    """Headers, the raw encoded message and every decoded part: wherever a leak could hide."""
    parts = [message.as_string()]
    parts += [
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    ]
    return "\n".join(parts)


def test_a_revocation_two_days_from_its_deadline_is_in_the_morning_digest(reports_url):
    digest = _digest(reports_url, near_days=3)
    assert digest.counts() == {
        "expiring": 2,
        "expired": 1,
        "late_revocations": 1,
        "near_deadline_revocations": 1,
        "overdue_revocations": 1,
    }
    listed = {r.request_id: r.state for r in digest.requests}
    assert listed == {"HD-LATE": "late", "HD-NEAR": "near_deadline", "CRM-STALE": "overdue"}
    # the one whose deadline passed since the report was built comes first
    assert [r.request_id for r in digest.requests] == ["CRM-STALE", "HD-NEAR", "HD-LATE"]
    assert not digest.missing_tables


def test_a_wider_near_deadline_window_brings_in_the_request_twenty_days_away(reports_url):
    digest = _digest(reports_url, near_days=21)
    assert digest.near_deadline == 2
    assert "WEB-FAR" in {r.request_id for r in digest.requests}
    assert "HD-ONTIME" not in {r.request_id for r in digest.requests}


def test_expiring_consents_are_counted_by_purpose_and_channel(reports_url):
    digest = _digest(reports_url)
    assert [(e.purpose, e.channel, e.expiring, e.expired) for e in digest.by_purpose_channel] == [
        ("marketing", "email", 1, 0),
        ("marketing", "sms", 1, 1),
    ]
    with psycopg.connect(reports_url, autocommit=True) as conn:
        narrower = build_digest(conn, near_days=3, expiring_days=7)
    assert (narrower.expiring, narrower.expired) == (1, 1)


def test_the_digest_names_request_and_client_ids_never_the_person(reports_url):
    message = render_digest(_digest(reports_url))
    text = _whole_text(message)
    for request_id in ("HD-LATE", "HD-NEAR", "CRM-STALE", "C-1"):
        assert request_id in text
    assert PERSON not in text and "Иванова" not in text
    assert PHONE not in text and "отзываю" not in text
    assert message["Subject"].startswith("consent-center digest ")
    assert "1 late revocation," in message["Subject"]
    assert "2 expiring consents" in message["Subject"]


def test_before_the_first_build_the_digest_is_empty_not_an_error(server_url):
    with fresh_database(server_url) as url:
        digest = _digest(url)
    assert digest.counts() == dict.fromkeys(digest.counts(), 0)
    assert digest.missing_tables == (
        "consent.report_expiring",
        "consent.report_revocation_deadlines",
    )
    assert "Not built yet" in render_digest(digest).get_content()


def test_without_an_smtp_host_the_digest_is_built_and_nothing_is_sent(
    reports_url, no_smtp, smtp_server
):
    mailbox, _ = smtp_server
    assert smtp_settings_from_env() is None
    result = materialize(
        [email_digest],
        resources={"consent_center": ConsentCenterResource(database_url=reports_url)},
    )
    assert result.success
    metadata = _digest_metadata(result)
    assert metadata["sent"] is False
    assert metadata["late_revocations"] == 1 and metadata["expiring"] == 2
    assert mailbox.envelopes == []


def test_with_smtp_configured_the_morning_digest_reaches_the_dpo_and_legal(
    reports_url, smtp_configured
):
    result = materialize(
        [email_digest],
        resources={"consent_center": ConsentCenterResource(database_url=reports_url)},
    )
    assert result.success
    metadata = _digest_metadata(result)
    assert metadata["sent"] is True and metadata["recipients"] == 2
    (sender, recipients, message), *others = smtp_configured.envelopes
    assert not others
    assert sender == "consent-center@bank.example"
    assert recipients == ["dpo@bank.example", "legal@bank.example"]
    assert message["Subject"] == metadata["subject"]
    assert "HD-NEAR" in message.get_content()
    assert PERSON not in _whole_text(message)


def test_a_second_transform_the_same_day_does_not_send_the_digest_again(
    reports_url, smtp_configured
):
    resources = {"consent_center": ConsentCenterResource(database_url=reports_url)}
    with DagsterInstance.ephemeral() as instance:
        sent = [
            _digest_metadata(materialize([email_digest], resources=resources, instance=instance))
            for _ in range(3)
        ]
    assert [m["sent"] for m in sent] == [True, False, False]
    assert {m["last_sent_day"] for m in sent} == {sent[0]["day"]}
    assert len(smtp_configured.envelopes) == 1


def test_send_digest_reports_what_it_sent(reports_url, smtp_configured):
    settings = smtp_settings_from_env()
    with psycopg.connect(reports_url, autocommit=True) as conn:
        sent = send_digest(conn, settings, near_days=21)
    assert sent["recipients"] == 2 and sent["near_deadline_revocations"] == 2
    ((_, _, message),) = smtp_configured.envelopes
    assert "WEB-FAR" in message.get_content()


def test_an_smtp_host_without_recipients_is_a_one_line_error(no_smtp, monkeypatch):
    monkeypatch.setenv("CONSENT_SMTP_HOST", "mail.bank.example")
    with pytest.raises(NotificationSettingsError, match="CONSENT_DIGEST_TO") as error:
        smtp_settings_from_env()
    assert "\n" not in str(error.value)


def test_smtp_settings_default_to_port_25_plain_and_a_localhost_sender(no_smtp, monkeypatch):
    monkeypatch.setenv("CONSENT_SMTP_HOST", "mail.bank.example")
    monkeypatch.setenv("CONSENT_DIGEST_TO", "dpo@bank.example")
    settings = smtp_settings_from_env()
    assert (settings.port, settings.starttls, settings.ssl) == (25, False, False)
    assert settings.sender == "consent-center@localhost"
    assert settings.near_days == 3 and settings.recipients == ("dpo@bank.example",)
    monkeypatch.setenv("CONSENT_SMTP_STARTTLS", "maybe")
    with pytest.raises(NotificationSettingsError, match="CONSENT_SMTP_STARTTLS"):
        smtp_settings_from_env()


# --- run-failure alerts -------------------------------------------------------------------


@op
def load_that_breaks():
    raise RuntimeError("batch crm/2024-06-01 could not be read\nDETAIL: row for Иванова")


@job
def nightly_that_fails():
    load_that_breaks()


def _failed_run_context(instance: DagsterInstance):
    result = nightly_that_fails.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    (failure,) = [
        event for event in result.all_events if event.event_type == DagsterEventType.RUN_FAILURE
    ]
    context = build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
    )
    return result.dagster_run, context


def test_a_failed_night_run_becomes_an_alert_in_the_dpo_mailbox(smtp_configured):
    with DagsterInstance.ephemeral() as instance:
        run, context = _failed_run_context(instance)
        run_failure_alert(context)
    ((_, recipients, message),) = smtp_configured.envelopes
    assert recipients == ["dpo@bank.example", "legal@bank.example"]
    assert message["Subject"] == "consent-center: run nightly_that_fails failed"
    body = message.get_content()
    assert run.run_id in body and f"/runs/{run.run_id}" in body
    assert "load_that_breaks" in body
    assert "batch crm/2024-06-01 could not be read" in body
    assert "Иванова" not in _whole_text(message)  # only the error's first line travels


def test_without_smtp_a_failed_run_is_only_logged(no_smtp, smtp_server):
    mailbox, _ = smtp_server
    with DagsterInstance.ephemeral() as instance:
        _, context = _failed_run_context(instance)
        run_failure_alert(context)
    assert mailbox.envelopes == []


def test_the_code_location_carries_the_digest_and_the_failure_alert():
    from pipelines.definitions import defs

    sensor = defs.resolve_sensor_def("run_failure_alert")
    assert sensor.default_status.value == "RUNNING"
    key = AssetKey(["reports", "email_digest"])
    digest = defs.resolve_assets_def(key)
    assert key in digest.keys
    graph = defs.resolve_asset_graph()
    assert AssetKey(["consent", "report_revocation_deadlines"]) in graph.get(key).parent_keys
    transform = defs.resolve_job_def("transform")
    assert key in transform.asset_layer.executable_asset_keys
