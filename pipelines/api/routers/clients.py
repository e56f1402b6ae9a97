"""The DPO's view of one client: the golden client, its records and consents, its history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from pipelines import answers, client_search, clients
from pipelines.api.deps import Caller, allow, log_access, pooled
from pipelines.api.errors import ApiError
from pipelines.api.models import NO_NUL, ErrorBody

router = APIRouter(prefix="/v1/clients", tags=["clients"])
ERRORS = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.get(
    "/search",
    responses=ERRORS,
    summary="Which clients could this person be (at most 20, scored by the identity model)",
)
def search(
    request: Request,
    caller: Annotated[Caller, Depends(allow("dpo"))],
    last_name: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    first_name: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    middle_name: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    birth_date: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    phone: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    email: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    passport: Annotated[str | None, Query(pattern=NO_NUL)] = None,
) -> dict:
    """Route order matters: /search is declared before /{client_id}."""
    question = client_search.Question(
        last_name, first_name, middle_name, birth_date, phone, email, passport
    )
    with pooled(request) as conn:
        try:
            found = client_search.search(conn, request.app.state.settings, question)
        except answers.AnswerError as error:
            raise ApiError(422, "invalid_request", str(error)) from error
        rows = [(c["client_id"], None, None, 200) for c in found]
        log_access(conn, caller, "clients/search", rows)
    return {"candidates": found, "fields": question.given()}


@router.get(
    "/{client_id}", responses=ERRORS, summary="The golden client, its records, its consents"
)
def client(
    request: Request,
    caller: Annotated[Caller, Depends(allow("dpo"))],
    client_id: Annotated[str, Path(pattern=NO_NUL)],
    at: Annotated[datetime | None, Query(description="ISO 8601 instant; default now")] = None,
) -> dict:
    with pooled(request) as conn:
        try:
            card = clients.client_card(
                conn, client_id, answers.parse_instant(at.isoformat() if at else None)
            )
        except answers.UnknownRecord as error:
            log_access(conn, caller, "clients", [(client_id, None, None, 404)])
            raise ApiError(404, "unknown_client", str(error)) from error
        except answers.AnswerError as error:
            raise ApiError(422, "invalid_request", str(error)) from error
        log_access(conn, caller, "clients", [(client_id, None, None, 200)])
    return card


@router.get(
    "/{client_id}/history", responses=ERRORS, summary="Every consent interval and its basis"
)
def history(
    request: Request,
    caller: Annotated[Caller, Depends(allow("dpo"))],
    client_id: Annotated[str, Path(pattern=NO_NUL)],
) -> dict:
    with pooled(request) as conn:
        try:
            found = clients.client_history(conn, client_id)
        except answers.UnknownRecord as error:
            log_access(conn, caller, "clients/history", [(client_id, None, None, 404)])
            raise ApiError(404, "unknown_client", str(error)) from error
        log_access(conn, caller, "clients/history", [(client_id, None, None, 200)])
    return found
