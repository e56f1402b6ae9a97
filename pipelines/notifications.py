"""E-mail notifications: the morning digest and run-failure alerts, sent through SMTP.

Off by default: nothing is sent until CONSENT_SMTP_HOST is set. The settings are read from the
environment at call time, like every other CONSENT_* variable, so the Dagster UI, its sensors
and `consent-center run` agree.

The digest carries no personal data: only record ids, client ids, codes, dates and counts. The
people behind those ids are looked up in the database by those entitled to see them.
"""

import os
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import psycopg

from pipelines.settings import MOSCOW, consent_now

SMTP_TIMEOUT_SECONDS = 30
DEFAULT_SENDER = "consent-center@localhost"
DEFAULT_NEAR_DAYS = 3
LIST_LIMIT = 50

EXPIRING_TABLE = "consent.report_expiring"
DEADLINES_TABLE = "consent.report_revocation_deadlines"


class NotificationSettingsError(ValueError):
    """A CONSENT_SMTP_* / CONSENT_DIGEST_* variable is missing or malformed (one-line message)."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    recipients: tuple[str, ...]
    port: int = 25
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    sender: str = DEFAULT_SENDER
    near_days: int = DEFAULT_NEAR_DAYS


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _env_bool(name: str, default: bool = False) -> bool:
    value = _env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise NotificationSettingsError(f"{name} must be true or false, not {value!r}")


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise NotificationSettingsError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise NotificationSettingsError(f"{name} must be at least {minimum}, not {number}")
    return number


def smtp_settings_from_env() -> SmtpSettings | None:
    """The SMTP settings, or None when CONSENT_SMTP_HOST is unset (notifications are off)."""
    host = _env("CONSENT_SMTP_HOST")
    if host is None:
        return None
    recipients = tuple(
        address.strip()
        for address in (os.environ.get("CONSENT_DIGEST_TO") or "").split(",")
        if address.strip()
    )
    if not recipients:
        raise NotificationSettingsError(
            "CONSENT_SMTP_HOST is set but CONSENT_DIGEST_TO is empty: "
            "give the comma-separated addresses that receive the digest and alerts"
        )
    use_ssl = _env_bool("CONSENT_SMTP_SSL")
    starttls = _env_bool("CONSENT_SMTP_STARTTLS")
    if use_ssl and starttls:
        raise NotificationSettingsError(
            "CONSENT_SMTP_SSL and CONSENT_SMTP_STARTTLS are both true: choose one"
        )
    return SmtpSettings(
        host=host,
        recipients=recipients,
        port=_env_int("CONSENT_SMTP_PORT", 25, minimum=1),
        user=_env("CONSENT_SMTP_USER"),
        password=os.environ.get("CONSENT_SMTP_PASSWORD") or None,
        starttls=starttls,
        ssl=use_ssl,
        sender=_env("CONSENT_SMTP_FROM") or DEFAULT_SENDER,
        near_days=_env_int("CONSENT_DIGEST_NEAR_DAYS", DEFAULT_NEAR_DAYS),
    )


def near_days_from_env() -> int:
    """CONSENT_DIGEST_NEAR_DAYS, also when SMTP is off (the digest is built either way)."""
    return _env_int("CONSENT_DIGEST_NEAR_DAYS", DEFAULT_NEAR_DAYS)


# --- the digest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RevocationLine:
    """One request that needs attention: ids and dates only."""

    request_id: str
    client_id: str | None
    source: str
    deadline_day: date | None
    state: str  # overdue | near_deadline | late


@dataclass(frozen=True)
class ExpiringLine:
    purpose: str
    channel: str
    expiring: int
    expired: int


@dataclass(frozen=True)
class Digest:
    as_of: datetime
    day: date  # the digest's day, Moscow time
    near_days: int
    expiring_days: int | None  # None: the window report_expiring was built with
    expiring: int
    expired: int
    late: int
    near_deadline: int  # open, deadline within near_days (or unknown: when in doubt, act)
    overdue: int  # open, deadline passed since the report was built
    requests: tuple[RevocationLine, ...]
    by_purpose_channel: tuple[ExpiringLine, ...]
    missing_tables: tuple[str, ...] = ()
    #: downstream systems late in applying revocations (consent.report_propagation):
    #: (system, revocations late)
    late_systems: tuple[tuple[str, int], ...] = ()

    @property
    def requests_total(self) -> int:
        return self.late + self.near_deadline + self.overdue

    def counts(self) -> dict[str, int]:
        return {
            "expiring": self.expiring,
            "expired": self.expired,
            "late_revocations": self.late,
            "near_deadline_revocations": self.near_deadline,
            "overdue_revocations": self.overdue,
        }


def _table_exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is not None


_DEADLINE_COUNTS = f"""
select
    count(*) filter (where state = 'late'),
    count(*) filter (where state = 'open' and (deadline_at is null
        or deadline_at between %(now)s and %(now)s + make_interval(days => %(near)s))),
    count(*) filter (where state = 'open' and deadline_at < %(now)s)
from {DEADLINES_TABLE}
"""

# overdue first, then the nearest deadlines, then the most recent late ones
_DEADLINE_LIST = f"""
select request_id, client_id, source, deadline_day, flag
from (
    select request_id, client_id, source, deadline_day, deadline_at,
           case when state = 'late' then 'late'
                when deadline_at < %(now)s then 'overdue'
                else 'near_deadline' end as flag
    from {DEADLINES_TABLE}
    where state = 'late'
       or (state = 'open' and (deadline_at is null
           or deadline_at <= %(now)s + make_interval(days => %(near)s)))
) attention
order by case flag when 'overdue' then 0 when 'near_deadline' then 1 else 2 end,
         case when flag = 'late' then null else deadline_at end nulls first,
         deadline_at desc nulls last, request_id
limit %(limit)s
"""

# a system is late on a revocation it acknowledged after the deadline, or has not acknowledged
# with the deadline passed (the report's own states, at the digest's instant)
_LATE_SYSTEMS = """
select system, count(*)
from consent.report_propagation
where acknowledged_at > deadline or (acknowledged_at is null and deadline < %(now)s)
group by system
order by count(*) desc, system
"""

_EXPIRING_BY_PURPOSE_CHANNEL = f"""
select purpose, channel,
       count(*) filter (where state = 'expiring'),
       count(*) filter (where state = 'expired')
from {EXPIRING_TABLE}
where %(days)s::int is null
   or (state = 'expiring' and expires_at <= %(now)s + make_interval(days => %(days)s::int))
   or (state = 'expired' and expires_at > %(now)s - make_interval(days => %(days)s::int))
group by purpose, channel
order by purpose, channel
"""


def build_digest(
    conn: psycopg.Connection,
    near_days: int,
    expiring_days: int | None = None,
    limit: int = LIST_LIMIT,
    as_of: datetime | None = None,
) -> Digest:
    """Counts and a bounded list, computed in the database from the two report tables.

    At `as_of`, else CONSENT_NOW, else the real now; its Moscow date is the digest's day.
    A report table that does not exist yet (nothing built) reads as empty and is named in
    `missing_tables`.
    """
    as_of = (as_of or consent_now()).astimezone(MOSCOW)
    day = as_of.date()
    params = {"now": as_of, "near": near_days, "days": expiring_days, "limit": limit}
    missing = tuple(t for t in (EXPIRING_TABLE, DEADLINES_TABLE) if not _table_exists(conn, t))

    late = near = overdue = 0
    requests: tuple[RevocationLine, ...] = ()
    if DEADLINES_TABLE not in missing:
        late, near, overdue = conn.execute(_DEADLINE_COUNTS, params).fetchone()
        requests = tuple(
            RevocationLine(str(r[0]), r[1], r[2], r[3], r[4])
            for r in conn.execute(_DEADLINE_LIST, params)
        )

    late_systems: tuple[tuple[str, int], ...] = ()
    if _table_exists(conn, "consent.report_propagation"):
        late_systems = tuple((r[0], r[1]) for r in conn.execute(_LATE_SYSTEMS, params))

    by_purpose_channel: tuple[ExpiringLine, ...] = ()
    if EXPIRING_TABLE not in missing:
        by_purpose_channel = tuple(
            ExpiringLine(*row) for row in conn.execute(_EXPIRING_BY_PURPOSE_CHANNEL, params)
        )

    return Digest(
        as_of=as_of,
        day=day,
        near_days=near_days,
        expiring_days=expiring_days,
        expiring=sum(line.expiring for line in by_purpose_channel),
        expired=sum(line.expired for line in by_purpose_channel),
        late=late,
        near_deadline=near,
        overdue=overdue,
        requests=requests,
        by_purpose_channel=by_purpose_channel,
        missing_tables=missing,
        late_systems=late_systems,
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def digest_subject(digest: Digest) -> str:
    parts = [_plural(digest.late, "late revocation")]
    if digest.near_deadline or digest.overdue:
        parts.append(f"{digest.near_deadline + digest.overdue} open near or past deadline")
    parts.append(_plural(digest.expiring, "expiring consent"))
    return f"consent-center digest {digest.day.isoformat()}: {', '.join(parts)}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return ["    " + line for line in lines]


def digest_text(digest: Digest) -> str:
    window = f", within {digest.expiring_days} days" if digest.expiring_days is not None else ""
    lines = [
        f"consent-center digest for {digest.day.isoformat()} "
        f"(as of {digest.as_of.isoformat(timespec='minutes')})",
        "",
        "Revocations, restrictions and erase requests",
        "(consent.report_revocation_deadlines):",
        f"    late (applied after the deadline, or unapplied past it): {digest.late}",
        f"    open, deadline within {digest.near_days} days or unknown: {digest.near_deadline}",
        f"    open, deadline passed since the report was built: {digest.overdue}",
        "",
        f"Consents expiring soon or recently expired (consent.report_expiring{window}):",
        f"    expiring: {digest.expiring}",
        f"    expired: {digest.expired}",
    ]
    if digest.requests:
        shown = len(digest.requests)
        more = digest.requests_total - shown
        lines += [
            "",
            f"Requests needing attention ({shown} shown"
            + (f", {more} more in the report)" if more > 0 else ")")
            + ":",
        ]
        lines += _table(
            ("state", "deadline", "request", "client", "source"),
            [
                (
                    r.state,
                    r.deadline_day.isoformat() if r.deadline_day else "unknown",
                    r.request_id,
                    r.client_id or "(not matched)",
                    r.source,
                )
                for r in digest.requests
            ],
        )
    if digest.late_systems:
        lines += [
            "",
            "Downstream systems late in applying revocations (consent.report_propagation):",
        ]
        lines += _table(
            ("system", "revocations late"),
            [(system, str(count)) for system, count in digest.late_systems],
        )
    if digest.by_purpose_channel:
        lines += ["", "Expiring and expired consents by purpose and channel:"]
        lines += _table(
            ("purpose", "channel", "expiring", "expired"),
            [
                (e.purpose, e.channel, str(e.expiring), str(e.expired))
                for e in digest.by_purpose_channel
            ],
        )
    if digest.missing_tables:
        lines += ["", "Not built yet (read as empty): " + ", ".join(digest.missing_tables)]
    lines += [
        "",
        "Only ids, codes and dates are in this e-mail. The details are in the report",
        "tables and in the CSV files under CONSENT_HOME/reports/.",
    ]
    return "\n".join(lines) + "\n"


def render_digest(digest: Digest) -> EmailMessage:
    """The digest as a plain-text e-mail; send_email fills in the sender and recipients."""
    message = EmailMessage()
    message["Subject"] = digest_subject(digest)
    message.set_content(digest_text(digest))
    return message


# --- sending ------------------------------------------------------------------------------


def send_email(settings: SmtpSettings, message: EmailMessage) -> None:
    """Send through the configured server: implicit TLS, STARTTLS or plain; login if a user."""
    for header, value in (
        ("From", settings.sender),
        ("To", ", ".join(settings.recipients)),
        ("Date", formatdate(localtime=True)),
        ("Message-ID", make_msgid(domain=settings.sender.rpartition("@")[2] or None)),
    ):
        if header not in message:
            message[header] = value
    if settings.ssl:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            timeout=SMTP_TIMEOUT_SECONDS,
            context=ssl.create_default_context(),
        )
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT_SECONDS)
    with smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(message, from_addr=settings.sender, to_addrs=list(settings.recipients))


def send_digest(
    conn: psycopg.Connection,
    settings: SmtpSettings,
    near_days: int | None = None,
    expiring_days: int | None = None,
    as_of: datetime | None = None,
) -> dict[str, int | str]:
    """Build, render and send the digest; returns what was sent (counts, recipients, subject)."""
    digest = build_digest(
        conn, settings.near_days if near_days is None else near_days, expiring_days, as_of=as_of
    )
    message = render_digest(digest)
    send_email(settings, message)
    return {
        **digest.counts(),
        "recipients": len(settings.recipients),
        "subject": message["Subject"],
    }


def failure_alert(job_name: str, run_id: str, error: str, failed_steps: list[str]) -> EmailMessage:
    """A short alert for a failed run: no data, only where to look."""
    message = EmailMessage()
    message["Subject"] = f"consent-center: run {job_name} failed"
    message.set_content(
        "\n".join(
            [
                f"The Dagster run {run_id} of job {job_name} failed.",
                "",
                f"failed steps: {', '.join(failed_steps) if failed_steps else '(none recorded)'}",
                f"error: {error}",
                "",
                f"In the Dagster UI (consent-center ui): /runs/{run_id}",
            ]
        )
        + "\n"
    )
    return message
