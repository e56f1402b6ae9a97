"""May we contact this person now (or at an instant), and why: one question or up to 10,000.

The answers are pipelines.answers' own, the ones `consent-center can-contact` prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from pipelines import answers
from pipelines.api.deps import Caller, allow
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


async def _answers(request: Request, questions: list[answers.Question], access: tuple[str, str]):
    """The answers (and their access log rows, written by the same statement), on the event
    loop's pool."""
    async with request.app.state.apool.connection() as conn:
        return await answers.can_contact_many_async(conn, questions, access=access)


@router.get(
    "/can-contact",
    response_model=CanContactAnswer,
    responses={**ERRORS, 404: {"model": ErrorBody}},
    summary="May we contact this person on this channel for this purpose",
)
async def can_contact(
    request: Request,
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
):
    # async all the way: one statement on the event loop's pool, no thread
    try:
        q = _question(source, record, purpose, channel, at.isoformat() if at else None, partner)
    except answers.AnswerError as error:
        raise ApiError(422, "invalid_request", str(error)) from error
    (answer,) = await _answers(request, [q], (caller.name, "can-contact"))
    if answer is None:
        raise ApiError(404, "unknown_record", f"no {source} record {record!r} is known")
    return JSONResponse(answer.as_dict())


@router.post(
    "/can-contact",
    response_model=Answers,
    responses=ERRORS,
    summary="Many questions at once (up to 10,000), answers in the same order",
)
async def can_contact_many(
    request: Request,
    caller: Annotated[Caller, Depends(allow("system", "marketing", "dpo"))],
    body: Questions,
):
    results: list[dict | None] = [None] * len(body.questions)
    checked: list[tuple[int, answers.Question]] = []
    for n, item in enumerate(body.questions):
        try:
            checked.append(
                (n, _question(item.source, item.record, item.purpose, item.channel, item.at,
                              item.partner))
            )  # fmt: skip
        except answers.AnswerError as error:
            results[n] = {"error": "invalid_question", "detail": str(error)}
    found = await _answers(request, [q for _, q in checked], (caller.name, "can-contact-batch"))
    for (n, q), answer in zip(checked, found, strict=True):
        results[n] = (
            answer.as_dict()
            if answer is not None
            else {
                "error": "unknown_record",
                "detail": f"no {q.source} record {q.record!r} is known",
            }
        )
    return JSONResponse({"answers": results})
