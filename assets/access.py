"""Database roles (DESIGN section 6): who may read what, re-applied after every rebuild.

Three NOLOGIN roles, to be granted to people's logins:
- consent_dpo: everything (raw, staging, consent);
- consent_analyst: the consent schema without personal-data columns, no raw or staging data;
- consent_marketing: golden_consent and consent_change only.
dbt recreates its tables on every run, which drops their grants, so this asset runs after the
models and grants again, column by column for the analyst.

People get a role through their own login: `consent-center grant --role R --login NAME`
(grant_role_to_login) creates the login if needed, with a generated password shown once, and
grants it the role; or, in SQL as the database owner: `create role NAME login password '...';
grant consent_analyst to NAME;`.
"""

import re
import secrets

import psycopg
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset
from psycopg import sql

from pipelines.resources import ConsentCenterResource

ROLES = ("consent_dpo", "consent_analyst", "consent_marketing")
# Columns that hold personal data wherever they appear (names, birth date, contacts, documents,
# address, IP, free-text names, and raw records kept for evidence).
PERSONAL_COLUMNS = {
    "last_name",
    "first_name",
    "middle_name",
    "birth_date",
    "phone",
    "phone_e164",
    "email",
    "passport",
    "passport_digits",
    "address",
    "ip",
    "fio",
    "raw_record",
    "payload",
    "_payload",
    "last_name_norm",
    "first_name_norm",
    "middle_name_norm",
    "fio_norm",
}
MARKETING_TABLES = ("golden_consent", "consent_change")
ROLES_KEY = AssetKey(["consent", "access_grants"])


# a person's login: letters, digits and _ . @ - (e.g. i.ivanova, ivanova@corp), 63 at most
LOGIN_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.@-]{0,62}")


class AccessError(Exception):
    """A grant that cannot be made: one line, nothing personal in it."""


def ensure_roles(conn: psycopg.Connection) -> None:
    """Create the three NOLOGIN roles if missing (inside the caller's transaction)."""
    for role in ROLES:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        if not exists:
            try:
                with conn.transaction():  # roles are cluster-wide: another database may race
                    conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
            except psycopg.errors.DuplicateObject:
                pass


def grant_role_to_login(conn: psycopg.Connection, role: str, login: str) -> str | None:
    """Grant `role` to the login `login`, creating the login if it does not exist.

    Returns the generated password of a login created here (shown once, stored only as a
    SCRAM verifier), None when an existing login was granted the role.
    """
    from pipelines.database import scram_verifier

    if role not in ROLES:
        raise AccessError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if not LOGIN_PATTERN.fullmatch(login) or login.lower().startswith("pg_"):
        raise AccessError(
            f"login {login!a} is not valid: letters, digits and _ . @ - only, "
            "starting with a letter or _, at most 63 characters, not pg_*"
        )
    if login in ROLES:
        raise AccessError(f"{login} is one of the project's group roles, not a person's login")
    password = None
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('consent-center:grants'))")
        ensure_roles(conn)
        row = conn.execute(
            "select rolcanlogin, rolsuper from pg_roles where rolname = %s", (login,)
        ).fetchone()
        if row is None:
            password = secrets.token_urlsafe(18)
            conn.execute(
                sql.SQL("create role {} login password {}").format(
                    sql.Identifier(login), sql.Literal(scram_verifier(password))
                )
            )
        elif not row[0]:
            raise AccessError(f"role {login} exists but cannot log in; give it LOGIN first")
        elif row[1]:
            raise AccessError(f"{login} is a superuser: a reader role would change nothing")
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(login)))
    return password


def apply_grants(conn: psycopg.Connection) -> dict[str, int]:
    """Create the roles if missing and grant exactly what each may read; returns grant counts."""
    counts = dict.fromkeys(ROLES, 0)
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('consent-center:grants'))")
        ensure_roles(conn)
        schemas = [
            r[0]
            for r in conn.execute(
                "select nspname from pg_namespace where nspname in ('raw', 'staging', 'consent')"
            )
        ]
        for schema in schemas:
            ident = sql.Identifier(schema)
            conn.execute(sql.SQL("grant usage on schema {} to consent_dpo").format(ident))
            conn.execute(
                sql.SQL("grant select on all tables in schema {} to consent_dpo").format(ident)
            )
            counts["consent_dpo"] += 1
        conn.execute("grant usage on schema consent to consent_analyst, consent_marketing")
        conn.execute("revoke select on all tables in schema consent from consent_analyst")
        conn.execute("revoke select on all tables in schema consent from consent_marketing")
        columns = conn.execute(
            """
            select c.table_name, array_agg(c.column_name::text order by c.ordinal_position)
            from information_schema.columns c
            where c.table_schema = 'consent'
            group by c.table_name
            """
        ).fetchall()
        for table, names in columns:
            visible = [n for n in names if n not in PERSONAL_COLUMNS]
            target = sql.Identifier("consent", table)
            # column privileges on a table; views get a plain grant when they carry no PII
            if visible:
                conn.execute(
                    sql.SQL("grant select ({}) on {} to consent_analyst").format(
                        sql.SQL(", ").join(sql.Identifier(n) for n in visible), target
                    )
                )
                counts["consent_analyst"] += 1
            if table in MARKETING_TABLES:
                conn.execute(sql.SQL("grant select on {} to consent_marketing").format(target))
                counts["consent_marketing"] += 1
        conn.execute("grant execute on all functions in schema consent to consent_analyst")
    return counts


@multi_asset(
    name="database_roles",
    specs=[
        AssetSpec(
            ROLES_KEY,
            deps=[
                AssetKey(["consent", "consent_change"]),  # the publication grants too
                AssetKey(["consent", "golden_consent"]),
                AssetKey(["consent", "consent_history"]),
                AssetKey(["consent", "consent_change"]),
                AssetKey(["consent", "golden_client"]),
            ],
            description="Grants for consent_dpo, consent_analyst and consent_marketing.",
            group_name="publish",
            kinds={"postgres"},
        )
    ],
)
def database_roles(context: AssetExecutionContext, consent_center: ConsentCenterResource):
    with consent_center.connect() as conn:
        counts = apply_grants(conn)
    context.log.info(f"grants applied: {counts}")
    return MaterializeResult(metadata={f"{role}_grants": n for role, n in counts.items()})
