"""The API's request and response bodies (pydantic): what /openapi.json documents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipelines import answers

#: the codes of DESIGN sections 5 and 6, as the answering layer owns them
Source = Literal[answers.SOURCES]
Purpose = Literal[answers.PURPOSES]
Channel = Literal[answers.CHANNELS]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
#: no text the API takes may hold a NUL character: PostgreSQL cannot store one, so no record,
#: client or code can contain it
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
Id = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1)]


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code: unknown_record, invalid_request, forbidden, ...")
    detail: str = Field(description="One line for people; never a personal value.")


class Health(BaseModel):
    status: Literal["ok"]
    published_run: str | None = Field(description="The Dagster run whose outputs readers see.")
    published_at: datetime | None


#: the answer of `can-contact --json`: the answering layer's own dataclass, so that the
#: document describes exactly what the CLI prints
CanContactAnswer = answers.Answer


class Question(BaseModel):
    """One question; a code or instant that cannot be read is answered in place."""

    model_config = ConfigDict(extra="forbid")
    source: Text
    record: Text
    purpose: Text
    channel: Text
    at: Text | None = None
    partner: Text = ""


class Questions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    questions: list[Question] = Field(max_length=10_000)


class AnswerError(BaseModel):
    error: Literal["unknown_record", "invalid_question"]
    detail: str


class Answers(BaseModel):
    answers: list[CanContactAnswer | AnswerError]


class _Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purposes: list[Text] | Literal["all"] = Field(
        "all", description='Purpose codes, or "all"; an unknown code widens to all (fail safe).'
    )
    channels: list[Text] | Literal["all"] = Field(
        "all", description='Channel codes, or "all"; an unknown code widens to all (fail safe).'
    )
    received_at: Text | None = Field(
        None,
        description="ISO 8601; default now. Unreadable or in the future: the arrival (reported).",
    )
    received_via: Text | None = Field(
        None, description="web, app, call_centre, branch or letter (else kept as other)."
    )
    evidence_url: Text | None = None
    request_id: Text | None = Field(
        None, max_length=200, description="The caller's idempotency key."
    )


class RevocationByRecord(_Revocation):
    """A revocation naming one of the person's source records (known yet or not)."""

    source: Source
    record: Id


class RevocationByClient(_Revocation):
    """A revocation naming the golden client."""

    client_id: Id


class RevocationReceipt(BaseModel):
    revocation_id: str
    effective_from: str
    receipt: dict


class Change(BaseModel):
    change_id: int
    client_id: str
    purpose: str
    channel: str
    partner_code: str
    old_status: str
    new_status: str
    allowed: bool
    valid_from: datetime | None
    valid_until: datetime | None
    basis_event_ids: list[str] | None
    changed_at: datetime


class Changes(BaseModel):
    changes: list[Change]
    last_change_id: int


class Acknowledgement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str = Field(
        pattern=NAME_PATTERN, description="The downstream system that applied the changes."
    )
    up_to_change_id: int = Field(
        ge=0, description="Every change up to this id is applied (409: not in the feed yet)."
    )


class AcknowledgementReceipt(BaseModel):
    system: str
    up_to_change_id: int
    acknowledged_at: datetime
