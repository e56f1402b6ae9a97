"""POST /v1/segments: a campaign's list, how many may be contacted (or the per-record CSV).

The same code as `consent-center segment`: the body is the CLI's CSV file.
"""

from __future__ import annotations

import io
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from pipelines import answers
from pipelines.api.deps import Caller, allow
from pipelines.api.errors import ApiError
from pipelines.api.models import NO_NUL, Channel, ErrorBody, Purpose

router = APIRouter(prefix="/v1", tags=["segments"])


def _segment(request: Request, caller: Caller, body: bytes, purpose, channel, at, partner, as_csv):
    with tempfile.TemporaryDirectory(prefix="consent-segment-") as folder:
        path = Path(folder) / "segment.csv"
        path.write_bytes(body)
        with request.app.state.pool.connection() as conn:
            try:
                result = answers.segment(
                    conn, path, purpose, channel, answers.parse_instant(at), partner
                )
            except answers.AnswerError as error:
                # the CLI's messages name its file: here it is the request's body
                raise answers.AnswerError(str(error).replace(str(path), "the body")) from error
            # every person of the list in the access log, set-based (a list may be millions)
            conn.execute(
                "insert into consent.api_access_log "
                "(key_name, endpoint, client_id, source, record_id, status_code) "
                "select %s, 'segments', client_id, source, source_record_id, "
                "case when result = 'unknown_record' then 404 else 200 end "
                "from segment_result order by line_number",
                (caller.name,),
            )
            if not as_csv:
                return {"counts": result.counts, "total": result.total, "at": result.at}
            out = io.BytesIO()
            answers.write_segment_list(conn, out)
            return out.getvalue()


@router.post(
    "/segments",
    responses={
        200: {
            "description": "The counts; the per-record list with Accept: text/csv",
            "content": {"text/csv": {}},
        },
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "CSV with the header source,source_record_id or client_id",
        }
    },
    summary="How many of these people may be contacted",
)
async def segment(
    request: Request,
    caller: Annotated[Caller, Depends(allow("marketing", "dpo"))],
    purpose: Annotated[Purpose, Query()],
    channel: Annotated[Channel, Query()],
    at: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
    partner: Annotated[str, Query(pattern=NO_NUL)] = "",
):
    body = await request.body()
    as_csv = "text/csv" in request.headers.get("accept", "")
    try:
        result = await run_in_threadpool(
            _segment,
            request,
            caller,
            body,
            purpose,
            channel,
            at.isoformat() if at else None,
            partner,
            as_csv,
        )
    except answers.AnswerError as error:
        raise ApiError(422, "invalid_request", str(error)) from error
    if as_csv:
        return Response(result, media_type="text/csv")
    return result
