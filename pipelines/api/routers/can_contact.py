"""May we contact this person now (or at an instant), and why: one question or up to 10,000.

The answers are pipelines.answers' own, the ones `consent-center can-contact` prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from pipelines import answers
from pipelines.api.deps import Caller, Connection, allow, log_access
from pipelines.api.errors import ApiError
from pipelines.api.models import (
    NO_NUL,
    Answers,
    CanContactAnswer,
    Channel,
    ErrorBody,
    Purpose,
    Questions,
    Source,
)

router = APIRouter(prefix="/v1", tags=["can-contact"])
ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def _question(source, record, purpose, channel, at, partner) -> answers.Question:
    """A checked question (AnswerError: a bad code or instant)."""
    answers.check_source(source)
    answers.check_codes(purpose, channel)
    return answers.Question(source, record, purpose, channel, answers.parse_instant(at), partner)


@router.get(
    "/can-contact",
    response_model=CanContactAnswer,
    responses={**ERRORS, 404: {"model": ErrorBody}},
    summary="May we contact this person on this channel for this purpose",
)
def can_contact(
    conn: Connection,
    caller: Annotated[Caller, Depends(allow("system", "marketing", "dpo"))],
    source: Annotated[Source, Query(description="The source of the record")],
    record: Annotated[str, Query(description="The record id in that source", pattern=NO_NUL)],
    purpose: Annotated[Purpose, Query()],
    channel: Annotated[Channel, Query()],
    at: Annotated[
        datetime | None, Query(description="ISO 8601 instant, default now; naive = Moscow")
    ] = None,
    partner: Annotated[
        str, Query(description="Partner code, for partner consents", pattern=NO_NUL)
    ] = "",
) -> dict:
    try:
        q = _question(source, record, purpose, channel, at.isoformat() if at else None, partner)
        answer = answers.can_contact(
            conn, q.source, q.record, q.purpose, q.channel, q.at, q.partner_code
        )
    except answers.UnknownRecord as error:
        log_access(conn, caller, "can-contact", [(None, source, record, 404)])
        raise ApiError(404, "unknown_record", str(error)) from error
    except answers.AnswerError as error:
        raise ApiError(422, "invalid_request", str(error)) from error
    log_access(conn, caller, "can-contact", [(answer.client_id, source, record, 200)])
    return answer.as_dict()


@router.post(
    "/can-contact",
    response_model=Answers,
    responses=ERRORS,
    summary="Many questions at once (up to 10,000), answers in the same order",
)
def can_contact_many(
    conn: Connection,
    caller: Annotated[Caller, Depends(allow("system", "marketing", "dpo"))],
    body: Questions,
) -> dict:
    results: list[dict | None] = [None] * len(body.questions)
    checked: list[tuple[int, answers.Question]] = []
    for n, item in enumerate(body.questions):
        try:
            checked.append(
                (
                    n,
                    _question(
                        item.source, item.record, item.purpose, item.channel, item.at, item.partner
                    ),
                )
            )
        except answers.AnswerError as error:
            results[n] = {"error": "invalid_question", "detail": str(error)}
    found = answers.can_contact_many(conn, [q for _, q in checked])
    log = []
    for (n, q), answer in zip(checked, found, strict=True):
        if answer is None:
            results[n] = {
                "error": "unknown_record",
                "detail": f"no {q.source} record {q.record!r} is known",
            }
            log.append((None, q.source, q.record, 404))
        else:
            results[n] = answer.as_dict()
            log.append((answer.client_id, q.source, q.record, 200))
    log_access(conn, caller, "can-contact-batch", log)
    return {"answers": results}
