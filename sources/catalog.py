"""Reference data kept by the DPO and lawyers; every catalog batch is a full snapshot."""

from sources.spec import CHANNELS, PURPOSES, FileSpec, SourceSpec, date, enum, integer, text

CONSENT_TYPES = FileSpec(
    file_name="consent_types.csv",
    table="catalog_consent_types",
    record_key=("consent_code",),
    columns=(
        text("consent_code", required=True),
        enum("purpose", PURPOSES),
        enum("channel", CHANNELS),
        text("partner_code"),
        integer("term_months"),
        text("description"),
    ),
)

WORDINGS = FileSpec(
    file_name="wordings.csv",
    table="catalog_wordings",
    record_key=("consent_code", "wording_version"),
    columns=(
        text("consent_code", required=True),
        text("wording_version", required=True),
        date("effective_from", required=True),
        date("effective_to"),
        text("text"),
        text("text_sha256"),
    ),
)

PRODUCT_MATRIX = FileSpec(
    file_name="product_matrix.csv",
    table="catalog_product_matrix",
    record_key=("rule_id",),
    columns=(
        text("rule_id", required=True),
        enum("match_kind", ("system_code", "product_type", "contract_mask")),
        text("match_value", required=True),
        text("consent_code", required=True),
        text("wording_version"),
        integer("term_months"),
        date("effective_from", required=True),
        date("effective_to"),
    ),
)

CRM_FLAG_MAP = FileSpec(
    file_name="crm_flag_map.csv",
    table="catalog_crm_flag_map",
    record_key=("flag_code",),
    columns=(
        text("flag_code", required=True),
        text("consent_code", required=True),
    ),
)

SOURCE = SourceSpec(
    name="catalog",
    description="Consent catalog: consent types, wordings, product matrix, CRM flag map",
    files=(CONSENT_TYPES, WORDINGS, PRODUCT_MATRIX, CRM_FLAG_MAP),
)
