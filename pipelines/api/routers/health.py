"""GET /health: the service is up, and which run's outputs it answers from."""

from __future__ import annotations

from fastapi import APIRouter, Request

from pipelines.api.deps import pooled
from pipelines.api.models import Health
from pipelines.publication import relation_exists

router = APIRouter(tags=["health"])


def published(conn) -> tuple[str | None, object]:
    if not relation_exists(conn, "consent", "publication"):
        return None, None
    row = conn.execute(
        "select run_id, published_at from consent.publication order by published_at desc limit 1"
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


@router.get("/health", response_model=Health, summary="Liveness and the published run")
def health(request: Request) -> Health:
    with pooled(request) as conn:
        run, at = published(conn)
    return Health(status="ok", published_run=run, published_at=at)
