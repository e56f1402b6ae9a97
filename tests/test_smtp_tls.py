"""Sending through a real SMTP server with STARTTLS, with implicit TLS, and with a login.

The server is aiosmtpd with a self-signed certificate made here; the client trusts it through
SSL_CERT_FILE, as an operator would point it at the company's CA. Each server binds a port the
OS assigns.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipelines.notifications import send_email, smtp_settings_from_env
from tests.smtp_server import SMTP_VARIABLES, Mailbox, OsPortController, self_signed_certificate

# ASCII: smtplib encodes AUTH PLAIN/LOGIN credentials as ASCII
# the implicit-TLS server needs no STARTTLS before AUTH; aiosmtpd warns about that regardless
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
USER, PASSWORD = "consent-center", "s3cret pass:word"


class Logins:
    """Accepts USER/PASSWORD only, and remembers every attempt."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (USER, PASSWORD)
        if isinstance(auth_data, LoginPassword):
            self.attempts.append((mechanism, auth_data.login.decode(), ok))
        # handled=False: the server answers 535 itself (aiosmtpd's default is to stay silent)
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's trust store: this certificate
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return server


@pytest.fixture
def environment(monkeypatch):
    for name in SMTP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONSENT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CONSENT_SMTP_FROM", "consent-center@bank.example")
    monkeypatch.setenv("CONSENT_DIGEST_TO", "dpo@bank.example")
    return monkeypatch


def _serve(**kwargs) -> Iterator[tuple[Mailbox, OsPortController]]:
    mailbox = Mailbox()
    controller = OsPortController(mailbox, **kwargs)
    controller.start()
    try:
        yield mailbox, controller
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(certificate) -> Iterator[tuple[Mailbox, OsPortController, Logins]]:
    logins = Logins()
    for mailbox, controller in _serve(
        tls_context=certificate,
        require_starttls=True,  # nothing but EHLO and STARTTLS before the session is encrypted
        authenticator=logins,
        auth_require_tls=True,
        auth_required=True,
    ):
        yield mailbox, controller, logins


@pytest.fixture
def ssl_server(certificate) -> Iterator[tuple[Mailbox, OsPortController, Logins]]:
    logins = Logins()
    for mailbox, controller in _serve(
        ssl_context=certificate, authenticator=logins, auth_require_tls=False, auth_required=True
    ):
        yield mailbox, controller, logins


def _log_in_at(environment, controller, *, password: str = PASSWORD, **flags: str) -> None:
    """Point the product at `controller`'s port as USER with `password`; each of `flags`
    (starttls, ssl) sets CONSENT_SMTP_<FLAG> to its value, as an operator writes it."""
    environment.setenv("CONSENT_SMTP_PORT", str(controller.port))
    for flag, value in flags.items():
        environment.setenv(f"CONSENT_SMTP_{flag.upper()}", value)
    environment.setenv("CONSENT_SMTP_USER", USER)
    environment.setenv("CONSENT_SMTP_PASSWORD", password)


def _message() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "consent-center: test"
    message.set_content("3 revocations near their deadline")
    return message


def test_starttls_then_login_delivers_the_message(starttls_server, environment):
    mailbox, controller, logins = starttls_server
    _log_in_at(environment, controller, starttls="true")
    settings = smtp_settings_from_env()
    assert (settings.starttls, settings.ssl, settings.port) == (True, False, controller.port)
    send_email(settings, _message())
    ((sender, recipients, message),) = mailbox.envelopes
    assert (sender, recipients) == ("consent-center@bank.example", ["dpo@bank.example"])
    assert message["Subject"] == "consent-center: test"
    assert [(login, ok) for _, login, ok in logins.attempts] == [(USER, True)]


def test_without_starttls_the_starttls_server_refuses_and_nothing_is_sent(
    starttls_server, environment
):
    mailbox, controller, logins = starttls_server
    _log_in_at(environment, controller)  # no STARTTLS
    with pytest.raises(smtplib.SMTPException):
        send_email(smtp_settings_from_env(), _message())
    assert mailbox.envelopes == [] and logins.attempts == []  # the password never went in clear


def test_a_wrong_password_is_refused(starttls_server, environment):
    mailbox, controller, logins = starttls_server
    _log_in_at(environment, controller, password="wrong", starttls="yes")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send_email(smtp_settings_from_env(), _message())
    assert mailbox.envelopes == []
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN): all refused
    assert logins.attempts and {(login, ok) for _, login, ok in logins.attempts} == {(USER, False)}


def test_implicit_tls_with_login_delivers_the_message(ssl_server, environment):
    mailbox, controller, logins = ssl_server
    _log_in_at(environment, controller, ssl="1")
    settings = smtp_settings_from_env()
    assert (settings.ssl, settings.starttls) == (True, False)
    send_email(settings, _message())
    ((_, recipients, message),) = mailbox.envelopes
    assert recipients == ["dpo@bank.example"] and message["Subject"] == "consent-center: test"
    assert [(login, ok) for _, login, ok in logins.attempts] == [(USER, True)]


def test_a_certificate_the_client_does_not_trust_is_refused(ssl_server, environment, tmp_path):
    mailbox, controller, _ = ssl_server
    folder = tmp_path / "other"
    folder.mkdir()
    other, _ = self_signed_certificate(folder)
    environment.setenv("SSL_CERT_FILE", str(other))  # trusts another certificate only
    environment.setenv("CONSENT_SMTP_PORT", str(controller.port))
    environment.setenv("CONSENT_SMTP_SSL", "true")
    with pytest.raises(ssl.SSLCertVerificationError):
        send_email(smtp_settings_from_env(), _message())
    assert mailbox.envelopes == []
