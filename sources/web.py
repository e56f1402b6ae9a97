"""Website events (JSON lines): registrations, consents given and withdrawn, profile updates.

Each line becomes one `raw.web_events` row (the nested `person` flattened) and one
`raw.web_event_consents` row per element of its `consents` array.
"""

from sources.spec import FileSpec, SourceSpec, StopRows, date, enum, text, timestamp

EVENT_TYPES = ("registration", "consent_given", "consent_withdrawn", "profile_update")
CONFIRMATIONS = ("none", "email_link", "sms_code", "esia")

# JSON path of every flattened column, relative to the line's object
EVENT_PATHS = {
    "event_id": ("event_id",),
    "occurred_at": ("occurred_at",),
    "event_type": ("event_type",),
    "account_id": ("account_id",),
    "last_name": ("person", "last_name"),
    "first_name": ("person", "first_name"),
    "middle_name": ("person", "middle_name"),
    "birth_date": ("person", "birth_date"),
    "phone": ("person", "phone"),
    "email": ("person", "email"),
    "form_id": ("form_id",),
    "confirmation": ("confirmation",),
    "ip": ("ip",),
    "evidence_url": ("evidence_url",),
}

EVENTS = FileSpec(
    file_name="events.jsonl",
    table="web_events",
    file_format="jsonl",
    record_key=("event_id",),
    columns=(
        text("event_id", required=True),
        timestamp("occurred_at", required=True),
        enum("event_type", EVENT_TYPES),
        text("account_id", required=True),
        text("last_name", pii=True),
        text("first_name", pii=True),
        text("middle_name", pii=True),
        date("birth_date", pii=True),
        text("phone", pii=True),
        text("email", pii=True),
        text("form_id"),
        enum("confirmation", CONFIRMATIONS, required=False),
        text("ip", pii=True),
        text("evidence_url"),
    ),
    # a withdrawal: the event type says so, or one of its consents is given as not granted
    stop_rows=StopRows(
        when=(
            "event_type = 'consent_withdrawn' or exists (select 1 from jsonb_array_elements("
            "case when jsonb_typeof(t._payload -> 'consents') = 'array' "
            "then t._payload -> 'consents' else '[]' end) as w(c) "
            "where jsonb_typeof(w.c) = 'object' and lower(w.c ->> 'granted') = 'false')"
        ),
        needs=("event_id", "account_id", "event_type"),
        receipt="occurred_at",
    ),
)

CONSENT_PATHS = {
    "consent_code": ("consent_code",),
    "granted": ("granted",),
    "wording_version": ("wording_version",),
    "wording_sha256": ("wording_sha256",),
}

EVENT_CONSENTS = FileSpec(
    file_name="events.jsonl",
    table="web_event_consents",
    file_format="jsonl",
    record_key=("event_id", "consent_index"),
    key_separator="#",
    columns=(
        text("event_id", required=True),
        text("consent_index", required=True),
        text("consent_code", required=True),
        enum("granted", ("true", "false")),
        text("wording_version"),
        text("wording_sha256"),
    ),
    stop_rows=StopRows(
        when="lower(btrim(granted)) = 'false'",
        needs=("event_id", "consent_index", "consent_code", "granted"),
    ),
)

SOURCE = SourceSpec(
    name="web",
    description="Website events: registrations, consents given and withdrawn",
    files=(EVENTS,),
    child_tables=(EVENT_CONSENTS,),
)
