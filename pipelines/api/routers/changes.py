"""The change feed (with long-poll) and the downstream systems' acknowledgements."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from pipelines import answers
from pipelines.api import changes
from pipelines.api.deps import Caller, allow, pooled
from pipelines.api.errors import ApiError
from pipelines.api.models import Acknowledgement, AcknowledgementReceipt, Changes, ErrorBody

router = APIRouter(prefix="/v1", tags=["changes"])
ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}}
#: how often a long-poll looks at the feed again
POLL_SECONDS = 0.25
MAX_WAIT_SECONDS = 60


def _read(request: Request, after: int, limit: int):
    with request.app.state.pool.connection() as conn:
        return changes.read_changes(conn, after, limit)


@router.get(
    "/changes",
    response_model=Changes,
    responses=ERRORS,
    summary="The change feed after a change id, oldest first; with wait, a long-poll",
)
async def read_changes(
    request: Request,
    caller: Annotated[Caller, Depends(allow("system", "dpo"))],
    after: Annotated[int, Query(ge=0, description="The last change id already applied")] = 0,
    limit: Annotated[int, Query(ge=1, le=changes.MAX_LIMIT)] = 1000,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to hold for a change")
    ] = 0,
) -> dict:
    # async, so that a held long-poll holds no thread and no connection while it sleeps
    deadline = time.monotonic() + wait
    while True:
        rows, last = await run_in_threadpool(_read, request, after, limit)
        if rows or time.monotonic() >= deadline:
            return {"changes": rows, "last_change_id": last}
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


@router.post(
    "/acknowledgements",
    status_code=201,
    response_model=AcknowledgementReceipt,
    responses={**ERRORS, 409: {"model": ErrorBody}},
    summary="A downstream system applied every change up to an id",
)
def acknowledge(
    request: Request,
    caller: Annotated[Caller, Depends(allow("system", "dpo"))],
    body: Acknowledgement,
) -> dict:
    try:
        with pooled(request) as conn:
            return changes.acknowledge(conn, caller.name, body.system, body.up_to_change_id)
    except changes.BeyondTheFeed as error:
        raise ApiError(409, "beyond_the_feed", str(error)) from error
    except answers.AnswerError as error:
        raise ApiError(422, "invalid_request", str(error)) from error
