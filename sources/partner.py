"""Partner feeds: clients who came through a partner, with the consent the partner collected."""

from sources.spec import FileSpec, SourceSpec, StopRows, boolean, date, text, timestamp

PARTNER_CLIENTS = FileSpec(
    file_name="partner_clients.csv",
    table="partner_clients",
    record_key=("partner_code", "partner_client_id"),
    columns=(
        text("partner_code", required=True),
        text("partner_client_id", required=True),
        text("last_name", pii=True),
        text("first_name", pii=True),
        text("middle_name", pii=True),
        date("birth_date", pii=True),
        text("phone", pii=True),
        text("email", pii=True),
        text("consent_code"),
        boolean("granted"),
        timestamp("obtained_at"),
        timestamp("valid_until"),
        text("restricted_channels"),
        text("agreement_id"),
        text("evidence_url"),
    ),
    # a refusal, or a row restricting channels, needs only the partner's record id
    stop_rows=StopRows(
        when="lower(btrim(granted)) = 'false' or btrim(restricted_channels) <> ''",
        needs=("partner_code", "partner_client_id"),
        receipt="obtained_at",
    ),
)

SOURCE = SourceSpec(
    name="partner",
    description="Partner channel clients, consents and channel restrictions",
    files=(PARTNER_CLIENTS,),
)
