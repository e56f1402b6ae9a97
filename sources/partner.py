"""Partner feeds: clients who came through a partner, with the consent the partner collected."""

from sources.spec import FileSpec, SourceSpec, boolean, date, text, timestamp

PARTNER_CLIENTS = FileSpec(
    file_name="partner_clients.csv",
    table="partner_clients",
    record_id="partner_code || ':' || partner_client_id",
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
)

SOURCE = SourceSpec(
    name="partner",
    description="Partner channel clients, consents and channel restrictions",
    files=(PARTNER_CLIENTS,),
)
