"""Where the project keeps its state, resolved from the three documented environment variables.

Every entry point (CLI, Dagster code location, tests) reads paths through this module so that
`CONSENT_HOME`, `CONSENT_LANDING_DIR` and `CONSENT_DATABASE_URL` mean the same thing everywhere.

The clock is here too: `CONSENT_NOW` (an ISO 8601 instant, naive = Moscow time; unset = the real
now) is the instant at which every "current" answer is computed: golden_consent, the reports, the
revocation deadline states, the digest, the validation's "in the future" rules and `can-contact`
without --at. Audit timestamps (loaded_at, executed_at, ...) stay wall-clock facts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
# The OS user the embedded PostgreSQL runs as when the project runs as root (PostgreSQL refuses
# to run as root); CONSENT_HOME is then 0710 with this user's group, so it reaches its data.
EMBEDDED_SERVER_USER = "embedded_postgres"
# Everything the project writes (CONSENT_HOME, reports, change-feed files, Data Docs, Dagster's
# instance, logs) is for its owner only: files 0600, folders 0700.
PRIVATE_UMASK = 0o077
# an instant without a zone is Moscow time (DESIGN section 5)
MOSCOW = ZoneInfo("Europe/Moscow")
CLOCK_ENV = "CONSENT_NOW"
#: how golden_consent reads "now" (macros/as_of.sql: reader_instant): `now` (the real clock) or
#: `as_of` (the run's instant, for installations whose runs pin CONSENT_NOW); set by each run
READ_CLOCK_ENV = "CONSENT_READ_CLOCK"


class ClockError(ValueError):
    """CONSENT_NOW (or another instant) is not an ISO 8601 date or timestamp; one line."""


# PostgreSQL reads UTC offsets up to 15:59 either way, Python's datetime up to 23:59
_POSTGRES_OFFSET_LIMIT = timedelta(hours=16)


def zoned_instant(value: datetime) -> datetime:
    """`value` with its zone (none: Moscow time), in a form PostgreSQL accepts.

    An offset of 16 hours or more is valid ISO 8601 and Python reads it, but PostgreSQL refuses
    it ("time zone displacement out of range"): such an instant is passed on in UTC. Raises
    ValueError for an instant whose UTC form falls outside Python's years 1 to 9999.
    """
    aware = value if value.tzinfo else value.replace(tzinfo=MOSCOW)
    offset = aware.utcoffset() or timedelta(0)
    if abs(offset) < _POSTGRES_OFFSET_LIMIT:
        return aware
    try:
        return aware.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("the instant is outside the years 1 to 9999 in UTC") from error


def parse_clock(text: str, what: str = CLOCK_ENV) -> datetime:
    """An ISO 8601 instant (a date alone is its midnight); without a zone, Moscow time."""
    try:
        return zoned_instant(datetime.fromisoformat(text.strip()))
    except ValueError as error:
        raise ClockError(
            f"{what} {text!r} is not an ISO 8601 instant (e.g. 2026-03-01T00:00:00+03:00)"
        ) from error


def clock_from_env() -> datetime | None:
    """The instant CONSENT_NOW pins, or None when it is unset (the real now applies)."""
    text = os.environ.get(CLOCK_ENV, "").strip()
    return parse_clock(text) if text else None


def consent_now() -> datetime:
    """The product's now: CONSENT_NOW when set, else the real now (in Moscow time)."""
    return clock_from_env() or datetime.now(MOSCOW)


def as_of_text(instant: datetime) -> str:
    """The canonical form an instant travels in (dbt's var `as_of`, CONSENT_NOW of a run)."""
    return instant.isoformat()


def dbt_executable() -> str:
    """The dbt installed next to this Python (a venv's bin/ is not always on PATH).

    Through `consent-center-dbt` where it is installed: dbt that dies with the run that
    started it (pipelines/dbt_child.py), so a killed run leaves no dbt building behind.
    """
    bin_dir = Path(sys.executable).parent
    for name in ("consent-center-dbt", "dbt"):
        if (bin_dir / name).exists():
            return str(bin_dir / name)
    return shutil.which("dbt") or "dbt"


@dataclass(frozen=True)
class Settings:
    home: Path
    landing_dir: Path
    database_url: str | None  # None: the embedded server under `home`
    clock: datetime | None = None  # a pinned instant; None: CONSENT_NOW, else the real now

    def now(self) -> datetime:
        """The instant "current" answers are computed at: the pinned clock, else CONSENT_NOW,
        else the real now."""
        return self.clock or consent_now()

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def uses_embedded_server(self) -> bool:
        return self.database_url is None


def make_private() -> None:
    """Files and folders this process creates from now on are its owner's only (0600/0700).

    Set by load_settings, which every entry point (CLI, Dagster code location and its runs,
    tests) calls before it writes anything; processes started from here (dagster dev, dbt)
    inherit it.
    """
    os.umask(PRIVATE_UMASK)


def _server_group(gid: int) -> bool:
    import grp

    with contextlib.suppress(KeyError):
        return grp.getgrgid(gid).gr_name == EMBEDDED_SERVER_USER
    return False


def make_home_private(home: Path) -> None:
    """CONSENT_HOME is 0700 (0710 as root when its group is the embedded server's own)."""
    try:
        st = home.stat()
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid():
        return  # not ours to change (a shared, managed folder): leave it to its owner
    wanted = 0o700
    if os.geteuid() == 0 and _server_group(st.st_gid):
        wanted |= stat.S_IXGRP
    if stat.S_IMODE(st.st_mode) != wanted:
        home.chmod(wanted)


def write_private_file(path: Path, text: str) -> None:
    """Write a file that only its owner may read (0600 whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def load_settings() -> Settings:
    """Read the environment now (not at import) so tests and the CLI can point elsewhere.

    Also makes this process's files private (make_private) and CONSENT_HOME 0700 if it exists
    (created later, it is 0700 through the umask). A malformed CONSENT_NOW raises ClockError.
    """
    clock = clock_from_env()
    make_private()
    home = Path(os.environ.get("CONSENT_HOME") or ".consent-center").expanduser().resolve()
    make_home_private(home)
    landing = os.environ.get("CONSENT_LANDING_DIR")
    landing_dir = Path(landing).expanduser().resolve() if landing else home / "landing"
    return Settings(
        home=home,
        landing_dir=landing_dir,
        database_url=os.environ.get("CONSENT_DATABASE_URL") or None,
        clock=clock,
    )
