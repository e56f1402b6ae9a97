"""Helpdesk tickets: revocation letters, erase and restriction requests as clients wrote them."""

from sources.spec import FileSpec, SourceSpec, date, enum, text, timestamp

REQUEST_TYPES = (
    "revoke_consent",
    "erase_data",
    "restrict_processing",
    "access_request",
    "complaint",
)

TICKETS = FileSpec(
    file_name="tickets.csv",
    table="helpdesk_tickets",
    record_id="ticket_id",
    columns=(
        text("ticket_id", required=True),
        timestamp("received_at", required=True),
        enum("request_type", REQUEST_TYPES),
        text("fio", pii=True),
        date("birth_date", pii=True),
        text("phone", pii=True),
        text("email", pii=True),
        text("passport", pii=True),
        text("contract_number"),
        # scopes stay free text here: a garbled scope is still a revocation (DESIGN rule 4),
        # so it must reach derivation rather than be dropped at the door
        text("scope_purposes"),
        text("scope_channels"),
        text("letter_scan_url"),
        timestamp("closed_at"),
    ),
)

SOURCE = SourceSpec(
    name="helpdesk",
    description="Helpdesk tickets: revocations, erase and restriction requests",
    files=(TICKETS,),
)
