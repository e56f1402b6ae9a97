"""A real SMTP server for tests (aiosmtpd), on a port the OS assigns when it binds.

Picking a free port first and binding it later races with every other process on the machine;
here the listening socket is bound to port 0 and the port is read back from it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

#: every variable that says where and how the product sends mail (pipelines/notifications.py,
#: smtp_settings_from_env): a test clears them all first, so that nothing from the environment
#: the suite runs in (a real server, a login) reaches the settings it builds
SMTP_VARIABLES = (
    "CONSENT_SMTP_HOST",
    "CONSENT_SMTP_PORT",
    "CONSENT_SMTP_USER",
    "CONSENT_SMTP_PASSWORD",
    "CONSENT_SMTP_STARTTLS",
    "CONSENT_SMTP_SSL",
    "CONSENT_SMTP_FROM",
    "CONSENT_DIGEST_TO",
)


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


class OsPortController(Controller):
    """aiosmtpd's Controller on 127.0.0.1, bound to a port the OS chooses (`.port` after start)."""

    def __init__(self, handler, **kwargs) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=0, **kwargs)

    async def _bind(self):
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _create_server(self):
        return self._bind()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files in `folder`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
