"""Helpdesk tickets: revocation letters, erase and restriction requests as clients wrote them."""

from sources.spec import FileSpec, SourceSpec, StopRows, date, enum, text, timestamp

STOP_REQUEST_TYPES = ("revoke_consent", "erase_data", "restrict_processing")
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
    record_key=("ticket_id",),
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
    # a letter that revokes, restricts or asks for erasure needs only its id and its type: a
    # garbled birth date or an unreadable receipt time never drops it
    stop_rows=StopRows(
        when="request_type in ('revoke_consent', 'erase_data', 'restrict_processing')",
        needs=("ticket_id", "request_type"),
        receipt="received_at",
    ),
)

SOURCE = SourceSpec(
    name="helpdesk",
    description="Helpdesk tickets: revocations, erase and restriction requests",
    files=(TICKETS,),
)
