"""CRM export: clients, their contracts, and the consent ticks ("галочки") set by operators."""

from sources.spec import FileSpec, SourceSpec, StopRows, boolean, date, text, timestamp

CLIENTS = FileSpec(
    file_name="clients.csv",
    table="crm_clients",
    record_key=("crm_client_id",),
    columns=(
        text("crm_client_id", required=True),
        text("last_name", pii=True),
        text("first_name", pii=True),
        text("middle_name", pii=True),
        date("birth_date", pii=True),
        text("phone", pii=True),
        text("email", pii=True),
        text("passport", pii=True),
        text("address", pii=True),
        timestamp("updated_at"),
    ),
)

CONTRACTS = FileSpec(
    file_name="contracts.csv",
    table="crm_contracts",
    record_key=("contract_id",),
    columns=(
        text("contract_id", required=True),
        text("crm_client_id", required=True),
        text("contract_number", required=True),
        text("system_code"),
        text("product_type"),
        text("product_name"),
        timestamp("signed_at", required=True),
        timestamp("closed_at"),
        text("branch_code"),
        text("scan_url"),
    ),
)

CONSENT_FLAGS = FileSpec(
    file_name="consent_flags.csv",
    table="crm_consent_flags",
    record_key=("crm_client_id", "flag_code"),
    columns=(
        text("crm_client_id", required=True),
        text("contract_id"),
        text("flag_code", required=True),
        boolean("value", required=True),
        timestamp("set_at", required=True),
        text("set_by"),
        text("scan_url"),
    ),
    # a `false` tick is a refusal or withdrawal: it needs the client, the flag and the value
    stop_rows=StopRows(
        when="lower(btrim(value)) = 'false'",
        needs=("crm_client_id", "flag_code", "value"),
        receipt="set_at",
    ),
)

SOURCE = SourceSpec(
    name="crm",
    description="CRM export: clients, contracts and consent ticks",
    files=(CLIENTS, CONTRACTS, CONSENT_FLAGS),
)
