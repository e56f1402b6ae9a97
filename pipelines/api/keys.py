"""API keys (DESIGN section 10): created, listed and revoked by `consent-center api-key`, checked
on every request.

A key is 32 random bytes (`secrets`), shown once at creation; the database keeps only its
sha256. A key carries so much randomness that a slow password hash would add nothing: nobody
can guess a key from its digest, and a lookup by digest is one index probe per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from pipelines.api.tables import ensure_api_tables

ROLES = ("system", "marketing", "dpo")
KEY_PREFIX = "cc_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class ApiKeyError(ValueError):
    """A key that cannot be created or revoked as asked (one line)."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: psycopg.Connection, name: str, role: str) -> str:
    """A new key named `name` with `role`; returns the key itself (never stored)."""
    if role not in ROLES:
        raise ApiKeyError(f"--role must be one of: {', '.join(ROLES)}")
    if not NAME_PATTERN.fullmatch(name):
        raise ApiKeyError(
            "--name must be 1 to 63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    ensure_api_tables(conn)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        taken = conn.execute(
            "select revoked_at is null from consent.api_key where name = %s", (name,)
        ).fetchone()
        if taken is not None:
            state = "in use" if taken[0] else "revoked (names are not reused)"
            raise ApiKeyError(f"an API key named {name!r} exists and is {state}")
        conn.execute(
            "insert into consent.api_key (name, role, key_sha256) values (%s, %s, %s)",
            (name, role, digest(key)),
        )
    return key


def list_keys(conn: psycopg.Connection) -> list[ApiKey]:
    ensure_api_tables(conn)
    rows = conn.execute(
        "select name, role, created_at, revoked_at from consent.api_key order by name"
    ).fetchall()
    return [ApiKey(*row) for row in rows]


def revoke_key(conn: psycopg.Connection, name: str) -> None:
    ensure_api_tables(conn)
    with conn.transaction():
        row = conn.execute(
            "update consent.api_key set revoked_at = clock_timestamp() "
            "where name = %s and revoked_at is null returning name",
            (name,),
        ).fetchone()
    if row is None:
        raise ApiKeyError(f"no API key named {name!r} is in use")


def key_of(conn: psycopg.Connection, key: str) -> tuple[str, str] | None:
    """(name, role) of a key in use, else None."""
    row = conn.execute(
        "select name, role from consent.api_key where key_sha256 = %s and revoked_at is null",
        (digest(key),),
    ).fetchone()
    return (row[0], row[1]) if row else None
