"""The FastAPI application: one pool, the routers, the error shape, metrics."""

from __future__ import annotations

import gc
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pipelines.api.errors import install_error_handlers
from pipelines.api.metrics import MetricsMiddleware, metrics_text, registry_for
from pipelines.api.routers import can_contact, changes, clients, health, revocations, segments
from pipelines.api.tables import ensure_api_tables
from pipelines.settings import load_settings

#: connections per worker; PostgreSQL's own limit is shared by every worker and by runs
POOL_SIZE_ENV = "CONSENT_API_POOL_SIZE"
DEFAULT_POOL_SIZE = 8

DESCRIPTION = """\
May we contact this person, on this channel, for this purpose, and on what evidence; take a
client's revocation and honour it at once; follow the change feed and acknowledge it.

Every request but `/health` carries `Authorization: Bearer <key>` (`consent-center api-key
create`). Roles: `system` (can-contact, revocations, changes, acknowledgements), `marketing`
(can-contact, segments), `dpo` (everything). Errors are `{"error": CODE, "detail": TEXT}`.
"""


def create_app(database_url: str | None = None) -> FastAPI:
    """The application over `database_url` (default: the installation's, as every command)."""
    if database_url is None:
        from pipelines.database import database_url as installation_url

        database_url = installation_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        size = int(os.environ.get(POOL_SIZE_ENV) or DEFAULT_POOL_SIZE)
        kwargs = {
            "autocommit": True,
            "application_name": "consent-center-api",
            # generic plans: the answering statement is planned once per connection, not per
            # request (its views make planning dearer than running it)
            "options": "-c plan_cache_mode=force_generic_plan",
        }
        # can-contact, the hot path, runs on the event loop (no thread, no hop); the other
        # endpoints, shared with the CLI's synchronous code, in worker threads
        apool = AsyncConnectionPool(
            database_url, min_size=2, max_size=size, kwargs=kwargs, open=False
        )
        pool = ConnectionPool(
            database_url, min_size=1, max_size=max(2, size // 2), kwargs=kwargs, open=False
        )
        pool.open(wait=True, timeout=30)
        await apool.open(wait=True, timeout=30)
        with pool.connection() as conn:
            ensure_api_tables(conn)
        app.state.pool = pool
        app.state.apool = apool
        app.state.key_cache = {}
        app.state.settings = load_settings()
        # everything imported so far (dagster, pandas: millions of objects) is there for good;
        # frozen, the collector no longer walks it, which otherwise pauses an answer now and
        # then for a tenth of a second
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await apool.close()
            pool.close()

    app = FastAPIOffline(
        title="consent-center API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, can_contact, segments, revocations, changes, clients):
        app.include_router(module.router)
    registry = registry_for(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = metrics_text(registry)
        return Response(body, media_type=content_type)

    app.add_middleware(MetricsMiddleware)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process (`consent-center serve --workers N`)."""
    return create_app(os.environ.get("CONSENT_API_DATABASE_URL") or None)
