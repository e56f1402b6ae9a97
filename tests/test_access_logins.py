"""Who may read what, proved with real logins over the real server, and private files on disk.

A whole `consent-center run` builds the worked example (plus one CRM card nobody can load: its
birth date is impossible, so the row is rejected and kept in dq_rejections with everything it
said); then a person's login, created by `consent-center grant`, connects with its own password
and reads what its role allows and nothing else; a connection without a password is refused;
and every file the run wrote under CONSENT_HOME is its owner's only.

Personal data for analysts is checked from the data, not from the product's list of personal
columns: every personal value the feeds carry (names, birth dates, phones, e-mails, documents,
addresses, IPs, read from the landing zone's files) is looked for in every column of every
relation an analyst's login can select, in every schema. Then a second run rebuilds the
published tables, and the analyst's and marketing's logins read exactly what they read before.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from assets.access import PERSONAL_COLUMNS
from sources import crm, helpdesk, partner, web
from tests.conftest import EXAMPLES, fresh_database

CLI = [sys.executable, "-m", "pipelines.cli"]
EMBEDDED = not os.environ.get("CONSENT_DATABASE_URL")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("access")
    landing = root / "landing"
    shutil.copytree(EXAMPLES, landing)
    _unloadable_card(landing)
    with fresh_database(server_url) as url:
        env = {
            "CONSENT_DATABASE_URL": url,
            "CONSENT_HOME": str(root / "home"),
            "CONSENT_LANDING_DIR": str(landing),
        }
        result = _cli("run", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        logins: list[str] = []
        yield {
            "url": url,
            "env": env,
            "home": root / "home",
            "landing": landing,
            "logins": logins,
        }
        with psycopg.connect(server_url, autocommit=True) as admin:
            for login in logins:  # roles are cluster-wide
                admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(login)))


def _unloadable_card(landing: Path) -> None:
    """A CRM card with a birth date that does not exist: rejected, kept with its raw record."""
    batch = landing / "crm" / "2024-06-05"
    batch.mkdir()
    card = {
        "crm_client_id": "K-7",
        "last_name": "Петрова",
        "first_name": "Анна",
        "middle_name": "Игоревна",
        "birth_date": "1990-02-31",
        "phone": "+7 916 700-07-07",
        "email": "anna.petrova@example.ru",
        "passport": "4510 777888",
        "address": "г. Тула, ул. Советская, д. 7",
        "updated_at": "2024-06-05T09:00:00",
    }
    for spec, rows in ((crm.CLIENTS, [card]), (crm.CONTRACTS, []), (crm.CONSENT_FLAGS, [])):
        with open(batch / spec.file_name, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=spec.column_names)
            writer.writeheader()
            writer.writerows(rows)
    (batch / "_SUCCESS").touch()


def _grant(built, role: str, login: str) -> subprocess.CompletedProcess:
    built["logins"].append(login)
    return _cli("grant", "--role", role, "--login", login, env=built["env"])


def _as(url: str, login: str, password: str | None) -> str:
    params = conninfo_to_dict(url)
    params.pop("password", None)
    params["user"] = login
    if password is not None:
        params["password"] = password
    return make_conninfo(**params)


def _denied(conn: psycopg.Connection, query: sql.Composable) -> bool:
    try:
        with conn.transaction():
            conn.execute(query)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_a_login_granted_consent_analyst_reads_consents_but_no_personal_data(built):
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    created = _grant(built, "consent_analyst", login)
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]  # shown once, alone on the last line
    assert len(password) >= 20 and login in created.stdout
    with psycopg.connect(built["url"]) as owner:
        assert owner.execute(
            "select rolcanlogin, rolpassword like 'SCRAM-SHA-256$%%' from pg_authid "
            "where rolname = %s",
            (login,),
        ).fetchone() == (True, True)  # stored as a verifier, never as the password
        personal = owner.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'consent' and column_name = any(%s) order by 1, 2",
            (sorted(PERSONAL_COLUMNS),),
        ).fetchall()
        private_tables = owner.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'staging') order by 1, 2"
        ).fetchall()
    assert ("golden_client", "last_name") in personal and len(personal) >= 6
    assert ("raw", "crm_clients") in private_tables and len(private_tables) >= 10

    with psycopg.connect(_as(built["url"], login, password), autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone()[0] == login
        statuses = conn.execute(
            "select client_id, purpose, channel, status, valid_from from consent.golden_consent"
        ).fetchall()
        assert (
            statuses and conn.execute("select count(*) from consent.consent_history").fetchone()[0]
        )
        assert conn.execute(
            "select count(client_id), sum(source_record_count) from consent.golden_client"
        ).fetchone()[0]
        for table, column in personal:
            query = sql.SQL("select {} from {} limit 1").format(
                sql.Identifier(column), sql.Identifier("consent", table)
            )
            assert _denied(conn, query), f"consent_analyst reads consent.{table}.{column}"
        assert _denied(conn, sql.SQL("select * from consent.golden_client"))
        for schema, table in private_tables:
            query = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
            assert _denied(conn, query), f"consent_analyst reads {schema}.{table}"

    # granting again, to an existing login: no new password, nothing else changes
    again = _grant(built, "consent_analyst", login)
    assert again.returncode == 0 and "existing login" in again.stdout
    assert password not in again.stdout


def test_a_marketing_login_reads_only_its_two_tables(built):
    login = f"marketing_{uuid.uuid4().hex[:8]}"
    created = _grant(built, "consent_marketing", login)
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]
    with psycopg.connect(_as(built["url"], login, password), autocommit=True) as conn:
        assert conn.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
        conn.execute("select count(*) from consent.consent_change")
        for table in ("consent_event", "golden_client", "client_xref", "dq_rejections"):
            query = sql.SQL("select count(*) from {}").format(sql.Identifier("consent", table))
            assert _denied(conn, query), f"consent_marketing reads consent.{table}"


@pytest.mark.skipif(not EMBEDDED, reason="the embedded server's authentication")
def test_a_connection_without_the_password_is_refused(built, server_url):
    login = f"nopass_{uuid.uuid4().hex[:8]}"
    created = _grant(built, "consent_dpo", login)
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]
    for user, secret in ((login, None), (login, "not-the-password"), ("postgres", None)):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_as(built["url"], user, secret), connect_timeout=5)
    with psycopg.connect(_as(built["url"], login, password)) as conn:
        assert conn.execute("select count(*) from raw.crm_clients").fetchone()[0] > 0


def test_grant_refuses_unknown_roles_and_odd_logins_in_one_line(built):
    for role, login in (
        ("consent_admin", "someone"),
        ("consent_analyst", 'x"; drop role postgres; --'),
        ("consent_analyst", "consent_dpo"),
        ("consent_analyst", "postgres"),
    ):
        refused = _cli("grant", "--role", role, "--login", login, env=built["env"])
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), refused.stderr
    with psycopg.connect(built["url"]) as owner:
        assert owner.execute("select count(*) from pg_roles where rolname = 'postgres'").fetchone()


def test_every_file_a_run_writes_under_consent_home_is_private(built):
    home: Path = built["home"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files, folders = [], []
    for folder, dirs, names in os.walk(home):
        folders += [Path(folder) / d for d in dirs]
        files += [Path(folder) / n for n in names]
    # the run wrote reports, Data Docs, the change feed, logs and Dagster's instance here
    assert any(p.suffix == ".html" for p in files) and any("dagster" in p.parts for p in files)
    assert len(files) >= 10
    exposed = [
        f"{p.relative_to(home)} {stat.S_IMODE(os.lstat(p).st_mode):o}"
        for p in files + folders
        if os.lstat(p).st_mode & 0o077
    ]
    assert exposed == []


# ------------------------------------------------------------- personal data, from the data
#: what DESIGN section 6 calls personal (names, birth date, phone, e-mail, documents, address,
#: IP), field by field, in each feed file that carries people
PERSONAL_FIELDS = {
    crm.CLIENTS: {
        "last_name",
        "first_name",
        "middle_name",
        "birth_date",
        "phone",
        "email",
        "passport",
        "address",
    },
    helpdesk.TICKETS: {"fio", "birth_date", "phone", "email", "passport"},
    partner.PARTNER_CLIENTS: {
        "last_name",
        "first_name",
        "middle_name",
        "birth_date",
        "phone",
        "email",
    },
    web.EVENTS: {"last_name", "first_name", "middle_name", "birth_date", "phone", "email", "ip"},
}
SOURCE_OF = {crm.CLIENTS: "crm", helpdesk.TICKETS: "helpdesk", partner.PARTNER_CLIENTS: "partner"}
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def test_every_personal_field_of_the_feeds_is_declared_and_hidden_from_analysts():
    for spec, fields in PERSONAL_FIELDS.items():
        declared = {column.name for column in spec.columns if column.pii}
        assert declared == fields, spec.file_name
        assert declared <= PERSONAL_COLUMNS, spec.file_name


def _feed_values(landing: Path) -> dict[str, set[str]]:
    """field -> every value the landing zone's files give it (web: the person and the IP)."""
    values: dict[str, set[str]] = {}
    for spec, source in SOURCE_OF.items():
        for path in landing.glob(f"{source}/*/{spec.file_name}"):
            with open(path, encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    for field in PERSONAL_FIELDS[spec]:
                        values.setdefault(field, set()).add(row[field])
    for path in landing.glob(f"web/*/{web.EVENTS.file_name}"):
        for line in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            for field, value in {**event["person"], "ip": event["ip"]}.items():
                values.setdefault(field, set()).add(value)
    return {field: {v for v in found if v} for field, found in values.items()}


def personal_needles(landing: Path) -> tuple[set[str], set[str]]:
    """What to look for: (texts, lower-case, Latin spellings too; digit strings of phones and
    documents), each long enough not to turn up by chance."""
    from unidecode import unidecode

    texts, digits = set(), set()
    for field, found in _feed_values(landing).items():
        for value in found:
            forms = {value, unidecode(value)}
            if field in ("fio", "address"):  # free text: each word of it too
                forms |= {w for form in set(forms) for w in re.findall(r"\w{4,}", form)}
            if field == "email":
                forms.add(value.split("@")[0])
            texts |= {form.lower() for form in forms if len(form) >= 3}
            if field in ("phone", "passport"):
                number = re.sub(r"\D", "", value)
                digits |= {number, number[-10:]} if len(number) >= 10 else {number}
    return texts, digits


def _mentions(cell: str, texts: set[str], digits: set[str]) -> list[str]:
    text = cell.lower()
    number = re.sub(r"\D", "", text)
    found = [d for d in digits if d in number]
    for needle in texts:
        # short names (Ким, Анна) as whole words; longer values anywhere, keys included
        if len(needle) < 5:
            if re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", text):
                found.append(needle)
        elif needle in text:
            found.append(needle)
    return found


def _columns(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """Every column of every table and view outside the system schemas."""
    return conn.execute(
        "select n.nspname, c.relname, a.attname from pg_class c "
        "join pg_namespace n on n.oid = c.relnamespace "
        "join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
        "where c.relkind in ('r', 'p', 'v', 'm', 'f') and n.nspname <> all(%s) "
        "and n.nspname not like 'pg_toast%%' and n.nspname not like 'pg_temp%%' "
        "order by 1, 2, 3",
        (list(SYSTEM_SCHEMAS),),
    ).fetchall()


def scan(conn, columns, texts, digits) -> tuple[set, dict]:
    """(the columns this connection may read, personal values found per column)."""
    readable, found = set(), {}
    for schema, table, column in columns:
        query = sql.SQL("select distinct {}::text from {} where {} is not null").format(
            sql.Identifier(column), sql.Identifier(schema, table), sql.Identifier(column)
        )
        try:
            with conn.transaction():
                cells = [row[0] for row in conn.execute(query)]
        except psycopg.errors.InsufficientPrivilege:
            continue
        readable.add((schema, table, column))
        hits = sorted({n for cell in cells for n in _mentions(cell, texts, digits)})
        if hits:
            found[(schema, table, column)] = hits
    return readable, found


def test_no_personal_value_of_the_feeds_can_be_selected_by_an_analyst(built):
    texts, digits = personal_needles(built["landing"])
    # the worked example's two people and the rejected card, in the spellings they were given
    assert {"соколова", "sokolova", "ким", "1988-11-02", "203.0.113.7", "баумана"} <= texts
    assert {"anna.petrova@example.ru", "1990-02-31", "петрова"} <= texts
    assert {"9035551234", "9035550011", "4612345678", "4510777888"} <= digits
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    created = _grant(built, "consent_analyst", login)
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]

    with psycopg.connect(built["url"], autocommit=True) as owner:
        columns = _columns(owner)
        # the owner (as a DPO would) finds them: in the golden record, the raw feeds and the
        # rejected card's raw record, so the search below looks where personal data really is
        _, everything = scan(owner, columns, texts, digits)
    places = {(schema, table) for schema, table, _ in everything}
    assert {("consent", "golden_client"), ("consent", "dq_rejections")} <= places
    assert {("raw", "crm_clients"), ("raw", "web_events")} <= places
    assert any(
        c[:2] == ("consent", "dq_rejections") and "петрова" in h for c, h in everything.items()
    )

    with psycopg.connect(_as(built["url"], login, password), autocommit=True) as analyst:
        readable, leaked = scan(analyst, columns, texts, digits)
    assert leaked == {}, f"consent_analyst can select personal data: {leaked}"
    # and reads what is not personal, from the same tables
    assert {
        ("consent", "golden_consent", "status"),
        ("consent", "consent_event", "evidence_url"),
        ("consent", "golden_client", "client_id"),
        ("consent", "dq_rejections", "reason"),
        ("consent", "dq_rejections", "record_id"),
    } <= readable
    assert {schema for schema, _, _ in readable} == {"consent"}


# ------------------------------------------------------------------ grants across a rebuild
def _published(conn: psycopg.Connection) -> dict[str, tuple]:
    """Each relation of schema consent: its oid and, for a view, what it reads."""
    rows = conn.execute(
        "select c.relname, c.oid::bigint, "
        "case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid) end "
        "from pg_class c where c.relnamespace = 'consent'::regnamespace "
        "and c.relkind in ('r', 'p', 'v', 'm')"
    ).fetchall()
    return {name: (oid, definition) for name, oid, definition in rows}


def _privileges(conn: psycopg.Connection) -> tuple[set, set]:
    """(columns consent_analyst may select, relations consent_marketing may select) in consent."""
    analyst = conn.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'consent' and has_column_privilege('consent_analyst', "
        "format('%I.%I', table_schema, table_name), column_name, 'SELECT')"
    ).fetchall()
    marketing = conn.execute(
        "select c.relname from pg_class c where c.relnamespace = 'consent'::regnamespace "
        "and c.relkind in ('r', 'p', 'v', 'm') "
        "and has_table_privilege('consent_marketing', c.oid, 'SELECT')"
    ).fetchall()
    return set(analyst), {r[0] for r in marketing}


@pytest.fixture(scope="module")
def rebuilt(built):
    """Two logins granted after the first run; then `run --rederive` rebuilds everything."""
    logins = {}
    for role in ("consent_analyst", "consent_marketing"):
        login = f"{role.removeprefix('consent_')}_{uuid.uuid4().hex[:8]}"
        created = _grant(built, role, login)
        assert created.returncode == 0, created.stderr
        logins[role] = _as(built["url"], login, created.stdout.strip().splitlines()[-1])
    with psycopg.connect(built["url"]) as owner:
        before = (_published(owner), _privileges(owner))
    again = _cli("run", "--rederive", env=built["env"])
    assert again.returncode == 0, again.stdout + again.stderr
    with psycopg.connect(built["url"]) as owner:
        after = (_published(owner), _privileges(owner))
    return {"logins": logins, "before": before, "after": after}


def test_a_second_run_rebuilds_the_tables_and_every_grant_is_back(rebuilt):
    (tables_before, (analyst_before, marketing_before)) = rebuilt["before"]
    (tables_after, (analyst_after, marketing_after)) = rebuilt["after"]
    # the run really re-created what readers read (a new relation, or a view onto new ones)
    for name in ("golden_consent", "consent_history", "consent_event", "report_expiring"):
        assert tables_after[name] != tables_before[name], f"consent.{name} was not rebuilt"
    assert ("golden_consent", "status") in analyst_before and len(analyst_before) >= 50
    assert analyst_after == analyst_before
    assert marketing_before == marketing_after == {"golden_consent", "consent_change"}


def test_the_logins_read_after_the_rebuild_what_they_read_before(rebuilt):
    with psycopg.connect(rebuilt["logins"]["consent_analyst"], autocommit=True) as analyst:
        for table in ("golden_consent", "consent_history", "consent_event", "report_expiring"):
            query = sql.SQL("select count(*) from {}").format(sql.Identifier("consent", table))
            analyst.execute(query)
        assert analyst.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
        assert analyst.execute(
            "select count(*) from consent.consent_event where evidence_url is not null"
        ).fetchone()[0]
        assert _denied(analyst, sql.SQL("select last_name from consent.golden_client"))
    with psycopg.connect(rebuilt["logins"]["consent_marketing"], autocommit=True) as marketing:
        assert marketing.execute("select count(*) from consent.golden_consent").fetchone()[0] > 0
        marketing.execute("select count(*) from consent.consent_change")
        assert _denied(marketing, sql.SQL("select count(*) from consent.consent_event"))
