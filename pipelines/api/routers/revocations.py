"""POST /v1/revocations: a client's "stop", durable before the answer, honoured at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from pipelines import answers
from pipelines.api import revocations
from pipelines.api.deps import Caller, allow, log_access, pooled
from pipelines.api.errors import ApiError
from pipelines.api.models import (
    ErrorBody,
    RevocationByClient,
    RevocationByRecord,
    RevocationReceipt,
)

router = APIRouter(prefix="/v1", tags=["revocations"])


@router.post(
    "/revocations",
    status_code=201,
    response_model=RevocationReceipt,
    responses={
        200: {"model": RevocationReceipt, "description": "The same request_id again"},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    summary="Receive a revocation (idempotent by request_id)",
)
def revoke(
    request: Request,
    caller: Annotated[Caller, Depends(allow("system", "dpo"))],
    body: RevocationByRecord | RevocationByClient,
):
    asked = revocations.RevocationRequest(**body.model_dump())
    source = getattr(body, "source", None)
    record = getattr(body, "record", None)
    with pooled(request) as conn:
        try:
            receipt = revocations.receive(conn, caller.name, asked)
        except answers.UnknownRecord as error:
            log_access(conn, caller, "revocations", [(asked.client_id, None, None, 404)])
            raise ApiError(404, "unknown_client", str(error)) from error
        except revocations.RevocationConflict as error:
            raise ApiError(409, "request_id_reused", str(error)) from error
        except answers.AnswerError as error:
            raise ApiError(422, "invalid_request", str(error)) from error
        status = 201 if receipt.created else 200
        log_access(
            conn, caller, "revocations", [(receipt.receipt["client_id"], source, record, status)]
        )
    content = RevocationReceipt(
        revocation_id=receipt.revocation_id,
        effective_from=receipt.effective_from,
        receipt=receipt.receipt,
    ).model_dump(mode="json")
    return JSONResponse(content, status_code=status)
