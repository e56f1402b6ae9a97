"""Request dependencies: a pooled connection, the caller's key and role, the access log."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from pipelines.api.errors import ApiError
from pipelines.api.keys import digest, key_of

#: a key revoked with `consent-center api-key revoke` stops working within this many seconds
KEY_CACHE_SECONDS = 5.0

bearer = HTTPBearer(auto_error=False, description="An API key: `consent-center api-key create`.")


@dataclass(frozen=True)
class Caller:
    name: str
    role: str


def pooled(request: Request):
    """A connection from the app's pool (autocommit; answers open their own transaction), for
    the body of a sync endpoint: taken and given back in the one worker thread that runs it.

    Not a FastAPI dependency on purpose: a sync generator dependency runs in one thread and the
    endpoint in another, so with every thread of the pool waiting for a connection, the
    requests holding the connections would wait for a thread forever."""
    return request.app.state.pool.connection()


async def _caller(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <API key>")
    cache: dict[str, tuple[float, Caller | None]] = request.app.state.key_cache
    key = digest(credentials.credentials)
    hit = cache.get(key)
    now = time.monotonic()
    if hit is None or hit[0] < now:
        # a database round trip only when the key is new to this worker or its entry is old
        found = await run_in_threadpool(_lookup, request.app.state.pool, credentials.credentials)
        hit = (now + KEY_CACHE_SECONDS, Caller(*found) if found else None)
        cache[key] = hit
    if hit[1] is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    return hit[1]


def _lookup(pool, key: str) -> tuple[str, str] | None:
    with pool.connection() as conn:
        return key_of(conn, key)


def allow(*roles: str):
    """A dependency: the caller, if its key's role is one of `roles` (else 401 or 403). Async:
    a known key costs no thread and no connection."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = await _caller(request, credentials)
        if caller.role not in roles:
            raise ApiError(
                403,
                "forbidden",
                f"a {caller.role} key may not use this endpoint ({', '.join(roles)} only)",
            )
        request.state.caller = caller
        return caller

    return dependency


def log_access(
    conn: psycopg.Connection,
    caller: Caller,
    endpoint: str,
    rows: list[tuple[str | None, str | None, str | None, int]],
) -> None:
    """consent.api_access_log: one row per client or record named (client id, source, record
    id, status code). COPY, so that a batch of 10,000 questions is one round trip."""
    if not rows:
        return
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy consent.api_access_log (key_name, endpoint, client_id, source, record_id, "
            "status_code) from stdin"
        ) as copy,
    ):
        for client_id, source, record, status in rows:
            copy.write_row((caller.name, endpoint, client_id, source, record, status))
